"""Referrals: codes and links, the claim that attributes a new member to a referrer, the
conversion that pays both sides, milestones and boosts, and the review of held referrals.

The rules live by subject in the modules beside this one: `codes` (codes, vanity codes and the
landing page's lookup), `claims` (the claim and its expiry), `rewards` (conversion, rewards,
milestones), `review` (the managers' decisions) and `stats` (the member's view). Other domains
import them from here.
"""

from __future__ import annotations

from server.referrals.claims import OPEN, Claimed, claim, expire_unconverted
from server.referrals.codes import (
    ALPHABET,
    CodeOwner,
    active_code,
    blocked_word,
    ensure_code,
    find_code,
    forget_code,
    link_for,
    set_vanity,
    skeleton,
)
from server.referrals.models import Referral
from server.referrals.review import approve, held, reassign, reject
from server.referrals.rewards import SOURCE, convert, converted_count, pay, reassess
from server.referrals.stats import my_referrals

__all__ = [
    "ALPHABET",
    "OPEN",
    "SOURCE",
    "Claimed",
    "CodeOwner",
    "Referral",
    "active_code",
    "approve",
    "blocked_word",
    "claim",
    "convert",
    "converted_count",
    "ensure_code",
    "expire_unconverted",
    "find_code",
    "forget_code",
    "held",
    "link_for",
    "my_referrals",
    "pay",
    "reassess",
    "reassign",
    "reject",
    "set_vanity",
    "skeleton",
]
