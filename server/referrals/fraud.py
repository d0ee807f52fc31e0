"""The risk score of a referral, from signals.

The brand's systems (and the member app) send what they know of a member's device, payment means
and address with a claim or with events; only keyed hashes are kept (`member_fingerprints`).
A referral whose two sides share a device or a payment means, whose code is claimed in a burst,
or whose friend signs up from a source that brings many sign-ups at once, scores high and is held
for a manager. A shared address alone (a family, an office) only raises the score.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from server.db import insert_or_touch
from server.referrals.content import Burst, Fraud
from server.referrals.models import MemberFingerprint, Referral

if TYPE_CHECKING:
    from server.context import Context

KINDS = ("device", "payment", "ip")
# What each kind is called in a claim's body and in an event's properties.
PROPERTY = {"device": "device_id", "payment": "payment_fingerprint", "ip": "ip"}
# Signals computed when the code is claimed, kept as they were when a referral is assessed again.
CLAIM_SIGNALS = ("claim_burst", "signup_burst")


MASKED = "h:"  # what a value masked on arrival starts with (the hash follows)


def fingerprint(ctx: Context, kind: str, value: str) -> str:
    """A keyed hash of a raw device id, payment fingerprint or address: equal values compare equal,
    and nobody without the server's secret can test a guess against it. A value masked on arrival
    (`h:<hash>`) is that hash already."""
    if value.startswith(MASKED) and len(value) == len(MASKED) + 32:
        return value[len(MASKED) :]
    if kind == "ip":
        value = _address(value)
    digest = hmac.new(ctx.settings.fingerprint_key, f"{kind}:{value}".encode(), hashlib.sha256)
    return digest.hexdigest()[:32]


def _address(value: str) -> str:
    """An IPv6 address by its /64 (one household or phone), an IPv4 address as it is."""
    try:
        ip = ipaddress.ip_address(value.strip())
    except ValueError:
        return value.strip().lower()
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _masker(kind: str) -> Any:
    def mask(ctx: Context, value: Any) -> Any:
        return MASKED + fingerprint(ctx, kind, value) if isinstance(value, str) and value.strip() else value

    return mask


# The brand's events never keep a raw device id, payment fingerprint or address.
MASKS = {prop: _masker(kind) for kind, prop in PROPERTY.items()}


def fingerprints_of(ctx: Context, values: dict[str, Any]) -> dict[str, str]:
    """The hashed signals among a claim's fields or an event's properties (by kind)."""
    out: dict[str, str] = {}
    for kind in KINDS:
        raw = values.get(PROPERTY[kind])
        if isinstance(raw, str) and raw.strip() and len(raw) <= 500:
            out[kind] = fingerprint(ctx, kind, raw)
    return out


async def remember(session: AsyncSession, rows: list[tuple[str, str, str]], at: datetime) -> None:
    """Record (member, kind, hash) triples, touching the ones seen before."""
    if not rows:
        return
    t = MemberFingerprint.__table__
    stmt = insert_or_touch(session, t, ["member_id", "kind", "value"], "last_seen")
    await session.execute(
        stmt,
        [
            {"member_id": m, "kind": k, "value": v, "first_seen": at, "last_seen": at}
            for m, k, v in sorted(set(rows))
        ],
    )


@dataclass(frozen=True)
class Assessment:
    score: int
    signals: list[dict[str, Any]]

    def holds(self, rules: Fraud) -> bool:
        return self.score >= rules.hold_at


async def _prints(session: AsyncSession, member_ids: list[str]) -> dict[str, set[tuple[str, str]]]:
    t = MemberFingerprint.__table__
    rows = await session.execute(
        sa.select(t.c.member_id, t.c.kind, t.c.value).where(t.c.member_id.in_(member_ids))
    )
    found: dict[str, set[tuple[str, str]]] = {m: set() for m in member_ids}
    for r in rows:
        found[r.member_id].add((r.kind, r.value))
    return found


async def assess(
    session: AsyncSession,
    rules: Fraud,
    *,
    friend_id: str,
    referrer_id: str,
    now: datetime,
    claim: tuple[str | None, str | None] | None = None,
    kept: list[dict[str, Any]] | None = None,
) -> Assessment:
    """Score a referral. `claim` (the claim's address and device hashes) computes the bursts, at
    claim time; afterwards the bursts found then are `kept` and the shared fingerprints looked at
    again, with whatever has been seen since."""
    signals: list[dict[str, Any]] = [s for s in (kept or []) if s["signal"] in CLAIM_SIGNALS]
    signals += await pair_signals(session, rules, friend_id, referrer_id)
    if claim is not None:
        signals += await _bursts(
            session, rules, referrer_id=referrer_id, now=now, ip=claim[0], device=claim[1]
        )
    return Assessment(sum(int(s["score"]) for s in signals), signals)


async def pair_signals(
    session: AsyncSession,
    rules: Fraud,
    friend_id: str,
    other_id: str,
    sides: tuple[str, str] = ("friend", "referrer"),
) -> list[dict[str, Any]]:
    """The signals between two members, one acting for the other (a friend claiming a referrer's
    code, a friend helping a member): the fingerprints they share, and the first one's device
    seen for other members too. `sides` names them in the signals' details."""
    prints = await _prints(session, [friend_id, other_id])
    signals = _shared(rules, prints[friend_id] & prints[other_id], sides)
    devices = [v for k, v in prints[friend_id] if k == "device"]
    if devices and rules.device_reused:
        signals += await _device_reused(session, rules, devices, [friend_id, other_id], sides[0])
    return signals


def _shared(rules: Fraud, shared: set[tuple[str, str]], sides: tuple[str, str]) -> list[dict[str, Any]]:
    """A signal for each kind of fingerprint the two sides share."""
    return [
        {"signal": f"shared_{kind}", "score": weight, "detail": f"{sides[0]} and {sides[1]} share a {kind}"}
        for kind, weight in (
            ("device", rules.shared_device),
            ("payment", rules.shared_payment),
            ("ip", rules.shared_ip),
        )
        if weight and any(k == kind for k, _ in shared)
    ]


async def _device_reused(
    session: AsyncSession, rules: Fraud, devices: list[str], sides: list[str], whose: str
) -> list[dict[str, Any]]:
    """The first side's devices seen for members other than the two `sides`: one signal, or none."""
    t = MemberFingerprint.__table__
    others = (
        await session.execute(
            sa.select(sa.func.count(sa.distinct(t.c.member_id))).where(
                t.c.kind == "device",
                t.c.value.in_(devices),
                t.c.member_id.not_in(sides),
            )
        )
    ).scalar_one()
    if not others:
        return []
    return [
        {
            "signal": "device_reused",
            "score": rules.device_reused,
            "detail": f"the {whose}'s device is also used by {others} other member(s)",
        }
    ]


async def _bursts(
    session: AsyncSession,
    rules: Fraud,
    *,
    referrer_id: str,
    now: datetime,
    ip: str | None,
    device: str | None,
) -> list[dict[str, Any]]:
    """Claims on the referrer's codes in a short time; sign-ups (claims) from one address or device."""
    r = Referral.__table__
    out: list[dict[str, Any]] = []
    if rules.claim_burst.score:
        out += await _burst(
            session,
            rules.claim_burst,
            now,
            r.c.referrer_id == referrer_id,
            "claim_burst",
            "claims on the referrer's codes",
        )
    same_source = [
        c
        for c in (r.c.ip_hash == ip if ip else None, r.c.device_hash == device if device else None)
        if c is not None
    ]
    if rules.signup_burst.score and same_source:
        out += await _burst(
            session, rules.signup_burst, now, sa.or_(*same_source), "signup_burst", "sign-ups from one source"
        )
    return out


async def _burst(
    session: AsyncSession, burst: Burst, now: datetime, claims: Any, signal: str, what: str
) -> list[dict[str, Any]]:
    """The `signal` when the recent `claims`, this one counted, reach the burst's count: one
    signal, or none."""
    r = Referral.__table__
    n = (
        await session.execute(
            sa.select(sa.func.count()).where(claims, r.c.claimed_at >= now - timedelta(minutes=burst.minutes))
        )
    ).scalar_one() + 1
    return burst_signal(burst, n, signal, what)


def burst_signal(burst: Burst, n: int, signal: str, what: str) -> list[dict[str, Any]]:
    """The `signal` when `n` things (the one being judged counted) came within the burst's
    minutes and reach its count: one signal, or none."""
    if n < burst.count:
        return []
    return [{"signal": signal, "score": burst.score, "detail": f"{n} {what} within {burst.minutes} minutes"}]
