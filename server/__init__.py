"""Member-engagement game server."""
