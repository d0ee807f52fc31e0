"""Badges and the tier ladder."""
