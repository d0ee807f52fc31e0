"""Referrals: codes and links, the claim that attributes a new member to a referrer, the
conversion that pays both sides, milestones and boosts, and the review of held referrals.

The rules live by subject in the modules beside this one: `codes` (codes, vanity codes and the
landing page's lookup), `claims` (the claim and its expiry), `rewards` (conversion, rewards,
milestones), `review` (the managers' decisions), `stats` (the member's view) and `fraud` (the risk signals,
which friend help reuses). Other domains
import them from here.
"""

from __future__ import annotations

from server.referrals.claims import OPEN, Claimed, claim, claim_for, expire_unconverted
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
from server.referrals.content import Burst, Fraud, program
from server.referrals.fraud import burst_signal, fingerprints_of, pair_signals, remember
from server.referrals.models import Referral
from server.referrals.review import approve, held, reassign, reject
from server.referrals.rewards import SOURCE, convert, converted_count, pay, reassess
from server.referrals.stats import my_referrals

__all__ = [
    "ALPHABET",
    "OPEN",
    "SOURCE",
    "Burst",
    "Claimed",
    "CodeOwner",
    "Fraud",
    "Referral",
    "active_code",
    "approve",
    "blocked_word",
    "burst_signal",
    "claim",
    "claim_for",
    "convert",
    "converted_count",
    "ensure_code",
    "expire_unconverted",
    "find_code",
    "fingerprints_of",
    "forget_code",
    "held",
    "link_for",
    "my_referrals",
    "pair_signals",
    "pay",
    "program",
    "reassess",
    "reassign",
    "reject",
    "remember",
    "set_vanity",
    "skeleton",
]
