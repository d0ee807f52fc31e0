"""The referral program as content (content/referrals.yaml): what the landing page says, the
windows, the rewards on both sides, milestones, the boost and the fraud rules.

Without the file the program runs on the defaults below (a first purchase converts, 3 and 10
converted referrals are milestones), with a plain landing page.
"""

from __future__ import annotations

import re
import string
from typing import Annotated, Any

from pydantic import AfterValidator, Field, field_validator, model_validator

from server.content.goals import Reward, Strict
from server.content.loader import ContentIssue, ContentKind, ContentStore
from server.content.where import check_where, compile_where
from server.errors import ProblemError
from server.events.catalog import check_event_use


def _template(*fields: str) -> Any:
    def check(text: str) -> str:
        try:
            parts = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise ValueError(f"{exc} (write {{{{ and }}}} for literal braces)") from None
        for _, name, spec, conversion in parts:
            if name is not None and (name not in fields or spec or conversion):
                allowed = ", ".join(f"{{{f}}}" for f in fields) or "no placeholders"
                raise ValueError(f"this text may use {allowed}; not {{{name}}}")
        return text

    return AfterValidator(check)


# Texts of the landing page may name the referrer and the code; links may name the code.
PageText = Annotated[str, Field(max_length=300), _template("referrer", "code")]
LinkTemplate = Annotated[str, Field(max_length=500), _template("code")]
_URL = r"^(https?://|[a-z][a-z0-9+.-]*://)\S+$"


class Landing(Strict):
    """What a friend sees when a shared link opens, and what the preview card shows."""

    site_name: str = Field(default="Rewards", max_length=100)
    title: PageText = "{referrer} invited you"
    description: PageText = (
        "Join with {referrer}'s code {code}: you both get a reward after your first order."
    )
    image: str | None = Field(default=None, max_length=500, pattern=r"^https?://\S+$")
    image_alt: str = Field(default="", max_length=200)
    heading: PageText = "{referrer} invited you"
    body: PageText = "Install the app and sign up: your friend's code {code} is applied when you join."
    anonymous_name: str = Field(
        default="A friend", max_length=60, description="when the referrer has no name"
    )
    open_label: str = Field(default="Open the app", max_length=60)
    deep_link: LinkTemplate | None = Field(default=None, description="e.g. myapp://referral/{code}")
    app_store_url: str | None = Field(default=None, max_length=500, pattern=_URL)
    play_store_url: str | None = Field(default=None, max_length=500, pattern=_URL)
    web_url: LinkTemplate | None = Field(default=None, description="a web sign-up page, for desktops")
    twitter_site: str | None = Field(default=None, max_length=40, pattern=r"^@\w{1,39}$")
    not_found_title: str = Field(default="This invitation link does not work", max_length=200)
    not_found_body: str = Field(
        default="Check the link with the friend who sent it, or join without a code.", max_length=300
    )
    expired_title: str = Field(default="This invitation link has expired", max_length=200)


class Vanity(Strict):
    """Codes members choose themselves ("ANNA-RUNS")."""

    enabled: bool = True
    min_length: int = Field(default=4, ge=3, le=20)
    max_length: int = Field(default=20, ge=3, le=32)
    max_changes: int = Field(default=3, ge=1, le=100, description="vanity codes a member may set in all")
    # Offensive words (and names reserved for the brand): a vanity code containing one, even
    # spelt with look-alike digits (sh1t, 4ss), is refused.
    blocklist: list[str] = Field(default_factory=list, max_length=5000)
    # Innocent words that contain a blocked one ("scunthorpe"): taken out before the check.
    allowlist: list[str] = Field(default_factory=list, max_length=5000)

    @field_validator("blocklist", "allowlist")
    @classmethod
    def _words(cls, words: list[str]) -> list[str]:
        bad = [w for w in words if not re.fullmatch(r"[a-z0-9]{2,40}", w)]
        if bad:
            raise ValueError(f"words are 2 to 40 lower-case letters or digits: {', '.join(bad[:5])}")
        return words

    @model_validator(mode="after")
    def _lengths(self) -> Vanity:
        if self.min_length > self.max_length:
            raise ValueError("min_length is above max_length")
        return self


class Conversion(Strict):
    """What turns an attributed friend into a converted referral."""

    event: str = Field(default="purchase", max_length=64, description="the qualifying action")
    where: str | dict[str, Any] | None = None
    window_days: int = Field(default=30, ge=1, le=3650, description="days after the claim")

    _where_parses = field_validator("where")(check_where)

    @model_validator(mode="after")
    def _compiled(self) -> Conversion:
        self.__dict__["_matches"] = compile_where(self.where).matches
        return self

    def accepts(self, properties: dict[str, Any]) -> bool:
        return bool(self.__dict__["_matches"](properties))


class Milestone(Strict):
    count: int = Field(ge=1, le=100_000, description="converted referrals")
    reward: Reward
    name: str | None = Field(default=None, max_length=100)


class Boost(Strict):
    """The earning multiplier a referrer gets for each conversion, for a time."""

    factor: float = Field(default=1.5, gt=1, le=10)
    hours: float = Field(default=72, ge=0.1, le=24 * 366)
    currencies: list[str] = Field(default_factory=lambda: ["points"])

    @field_validator("currencies")
    @classmethod
    def _currencies(cls, value: list[str]) -> list[str]:
        if not value or any(c not in ("points", "growth") for c in value):
            raise ValueError("a boost names points, growth or both")
        return value


class Burst(Strict):
    count: int = Field(ge=2, le=100_000)
    minutes: int = Field(ge=1, le=7 * 24 * 60)
    score: int = Field(ge=0, le=100)


class Fraud(Strict):
    """The risk score of a referral is the sum of the signals seen; at `hold_at` or above the
    referral is held for review. A shared IP alone (a family, an office) stays below it."""

    hold_at: int = Field(default=60, ge=1, le=1000)
    shared_device: int = Field(default=70, ge=0, le=1000, description="friend and referrer on one device")
    shared_payment: int = Field(default=80, ge=0, le=1000, description="one card or wallet for both")
    shared_ip: int = Field(default=20, ge=0, le=1000, description="one address for both")
    device_reused: int = Field(
        default=40, ge=0, le=1000, description="the friend's device claimed for another friend before"
    )
    claim_burst: Burst = Burst(count=5, minutes=60, score=35)
    signup_burst: Burst = Burst(count=4, minutes=60, score=35)
    # Events of these types may carry `device_id`, `payment_fingerprint` and `ip` (hashed on arrival).
    signal_events: list[str] = Field(default_factory=lambda: ["purchase"])
    review_days: int = Field(
        default=30, ge=0, le=3650, description="how long after conversion new evidence can still hold one"
    )


class ReferralsContent(Strict):
    enabled: bool = True
    code_length: int = Field(default=7, ge=5, le=16)
    claim_window_days: int = Field(default=14, ge=0, le=3650, description="days after sign-up to claim")
    landing: Landing = Landing()
    vanity: Vanity = Vanity()
    conversion: Conversion = Conversion()
    referrer_reward: Reward = Reward(points=500, growth=100)
    friend_reward: Reward = Reward(points=250)
    milestones: list[Milestone] = Field(
        default_factory=lambda: [
            Milestone(count=3, reward=Reward(points=1000, growth=200)),
            Milestone(count=10, reward=Reward(points=5000, growth=1000)),
        ]
    )
    boost: Boost | None = Boost()
    board: str | None = Field(default=None, max_length=64, description="the leaderboard of referrals")
    fraud: Fraud = Fraud()

    @field_validator("milestones")
    @classmethod
    def _milestones(cls, milestones: list[Milestone]) -> list[Milestone]:
        counts = [m.count for m in milestones]
        if counts != sorted(set(counts)):
            raise ValueError("milestones are listed by rising count, each count once")
        return milestones

    def milestone_after(self, converted: int) -> Milestone | None:
        return next((m for m in self.milestones if m.count > converted), None)


def _check(store: ContentStore) -> list[ContentIssue]:
    """The qualifying event exists (with what its filter names); rewards name manual badges; the
    board exists and counts `referral.converted`."""
    content: ReferralsContent | None = store.get("referrals")
    if content is None:
        return []
    rel = "referrals.yaml"
    c = content.conversion
    issues = check_event_use(store, rel, ("conversion",), c.event, where=compile_where(c.where))
    for i, t in enumerate(content.fraud.signal_events):
        issues += check_event_use(store, rel, ("fraud", "signal_events", i), t)
    badges = store.get("badges")
    rewards: list[tuple[tuple[str | int, ...], Reward]] = [
        (("referrer_reward",), content.referrer_reward),
        (("friend_reward",), content.friend_reward),
        *((("milestones", i, "reward"), m.reward) for i, m in enumerate(content.milestones)),
    ]
    for loc, reward in rewards:
        if reward.badge is None:
            continue
        badge = badges.get(reward.badge) if badges is not None else None
        if badge is None:
            issues.append(store.issue(rel, (*loc, "badge"), f"unknown badge `{reward.badge}`"))
        elif not badge.manual:
            issues.append(
                store.issue(
                    rel,
                    (*loc, "badge"),
                    f"badge `{reward.badge}` is earned by its criteria; a reward gives only manual badges",
                )
            )
    if content.board is not None:
        boards = store.get("leaderboards")
        board = boards.get(content.board) if boards is not None else None
        if board is None:
            issues.append(store.issue(rel, ("board",), f"unknown leaderboard `{content.board}`"))
        elif getattr(board.metric, "event", None) != "referral.converted":
            issues.append(
                store.issue(rel, ("board",), f"board `{content.board}` does not count `referral.converted`")
            )
    return issues


REFERRALS_KIND = ContentKind(
    name="referrals", filename="referrals.yaml", model=ReferralsContent, optional=True, check=_check
)


def program(ctx: Any) -> ReferralsContent:
    """The referral program serving now (the defaults when content has no referrals.yaml)."""
    found: ReferralsContent | None = ctx.content.get("referrals")
    return found if found is not None else _DEFAULTS


def disabled() -> ProblemError:
    """The answer to a member while the program is not running."""
    return ProblemError(404, "referrals_disabled", "The referral program is not running.")


_DEFAULTS = ReferralsContent()
