"""The page a shared referral link opens (`GET /r/{code}`), and the record of its clicks.

The page is the hot path of a referral program (every tap in a chat, every preview a chat app
fetches), so it is built from a per-process cache of codes and rendered pages, and its clicks are
written to SQL in batches, about once a second, not one row per request. Clicks keep the time, a
keyed hash of the address and the user agent: nothing that names a person.
"""

from __future__ import annotations

import asyncio
import functools
import re
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import structlog

from server.db import utcnow
from server.referrals import fraud
from server.referrals.content import Landing, program
from server.referrals.models import ReferralClick
from server.referrals.service import CodeOwner, find_code, link_for

if TYPE_CHECKING:
    from server.context import Context

log = structlog.get_logger(__name__)

# Chat apps and social networks fetch a link to draw its preview card: a view, not a click.
_BOTS = re.compile(
    r"bot\b|bot/|crawler|spider|preview|facebookexternalhit|facebot|whatsapp|telegram|discord|slack|"
    r"skypeuri|embedly|iframely|vkshare|pinterest|bitlybot|outbrain|quora link|headlesschrome"
)
_UA_MAX = 300
_SEEN_AGENTS_MAX = 10_000


@functools.lru_cache(maxsize=_SEEN_AGENTS_MAX)
def is_bot(user_agent: str) -> bool:
    """A chat app or crawler fetching the page (remembered per user agent: phones send a few
    strings over and over, and the search is most of a page's own cost)."""
    return bool(_BOTS.search(user_agent.lower()))


# --- clicks -----------------------------------------------------------------------------------


class ClickRecorder:
    """Clicks of this process, written together about once a second (and at shutdown)."""

    MAX_PENDING = 20_000  # beyond this (SQL away for long), clicks are counted as dropped
    EVERY = 1.0
    CHUNK = 200

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.pending: list[dict[str, Any]] = []
        self.dropped = 0
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def add(self, owner: CodeOwner, ip: str, user_agent: str) -> None:
        if len(self.pending) >= self.MAX_PENDING:
            self.dropped += 1
            return
        user_agent = user_agent[:_UA_MAX]
        self.pending.append(
            {
                "code": owner.code,
                "referrer_id": owner.member_id,
                "at": utcnow(),
                "ip_hash": fraud.fingerprint(self.ctx, "ip", ip),
                "user_agent": user_agent,
                "bot": is_bot(user_agent),
            }
        )
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self.pending:
            await asyncio.sleep(self.EVERY)
            await self.flush()

    async def flush(self) -> int:
        """Write what is pending now; on failure it stays pending for the next try."""
        async with self._lock:
            rows, self.pending = self.pending, []
            if not rows:
                return 0
            try:
                async with self.ctx.db.transaction() as session:
                    # In chunks, letting requests in between: one statement of thousands of rows
                    # would hold the event loop for tens of milliseconds.
                    for i in range(0, len(rows), self.CHUNK):
                        await session.execute(sa.insert(ReferralClick.__table__), rows[i : i + self.CHUNK])
                        await asyncio.sleep(0)
            except Exception as exc:
                log.warning("referral_clicks_not_written", clicks=len(rows), error=type(exc).__name__)
                room = self.MAX_PENDING - len(self.pending)
                self.dropped += max(len(rows) - room, 0)
                self.pending[:0] = rows[:room]
                return 0
            return len(rows)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.flush()


def recorder(ctx: Context) -> ClickRecorder:
    found: ClickRecorder | None = ctx.extras.get("referral_clicks")
    if found is None:
        found = ctx.extras["referral_clicks"] = ClickRecorder(ctx)
        ctx.on_close(found.close)
    return found


# --- the page ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    status: int
    html: str


_STYLE = (
    "body{font-family:system-ui,-apple-system,sans-serif;max-width:30rem;margin:0 auto;padding:2rem 1rem;"
    "color:#1d1d1f;text-align:center}img.hero{max-width:100%;border-radius:12px}"
    "h1{font-size:1.6rem;margin:1rem 0 .5rem}"
    ".code{font:600 1.4rem ui-monospace,monospace;letter-spacing:.15em;"
    "border:2px dashed #999;border-radius:8px;padding:.4rem 1rem;display:inline-block;margin:.5rem 0 1rem}"
    "a.open{display:block;background:#1d6fe0;color:#fff;text-decoration:none;font-weight:600;"
    "padding:.9rem;border-radius:10px;margin:1rem 0}.stores a{margin:0 .5rem;color:#1d6fe0}"
    "small{color:#666;display:block;margin-top:2rem}"
)


def _doc(title: str, head: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{escape(title)}</title>{head}<style>{_STYLE}</style></head><body>{body}</body></html>"
    )


def render(ctx: Context, owner: CodeOwner) -> str:
    """The page of a code: the preview card's tags, the invitation, the code and the way on."""
    landing: Landing = program(ctx).landing
    referrer = owner.name or landing.anonymous_name
    fields = {"referrer": referrer, "code": owner.display}
    return share_page(
        ctx,
        title=landing.title.format(**fields),
        description=landing.description.format(**fields),
        heading=landing.heading.format(**fields),
        body=landing.body.format(**fields),
        url=link_for(ctx, owner.display),
        code=owner.display,
        open_url=(landing.deep_link or landing.web_url or "").format(code=owner.display),
    )


def share_page(
    ctx: Context,
    *,
    title: str,
    description: str,
    heading: str,
    body: str,
    url: str,
    code: str | None = None,
    open_url: str = "",
    open_label: str | None = None,
) -> str:
    """A page that a link shared with friends opens (a referral, a team invite, a call for help):
    the preview card chat apps and social networks draw, the invitation, the code to keep and the
    way into the app, in the program's look (the landing section of content/referrals.yaml)."""
    landing: Landing = program(ctx).landing
    head = _preview_tags(landing, title, description, url)
    page = (
        (
            f'<img class="hero" src="{escape(landing.image)}" alt="{escape(landing.image_alt)}">'
            if landing.image
            else ""
        )
        + f"<h1>{escape(heading)}</h1>"
        + f"<p>{escape(body)}</p>"
        + (f'<div class="code" id="code">{escape(code)}</div>' if code else "")
        + (
            f'<a class="open" id="open" href="{escape(open_url)}">'
            f"{escape(open_label or landing.open_label)}</a>"
            if open_url
            else ""
        )
        + _store_links(landing, "Get the app: ")
        + f"<small>{escape(landing.site_name)}</small>"
    )
    return _doc(title, head, page)


def _preview_tags(landing: Landing, title: str, description: str, url: str) -> str:
    """The tags chat apps and social sites build a link's preview card from, and the canonical link."""
    card = "summary_large_image" if landing.image else "summary"
    meta = [
        ("property", "og:type", "website"),
        ("property", "og:site_name", landing.site_name),
        ("property", "og:title", title),
        ("property", "og:description", description),
        ("property", "og:url", url),
        ("name", "twitter:card", card),
        ("name", "twitter:title", title),
        ("name", "twitter:description", description),
        ("name", "description", description),
    ]
    if landing.image:
        meta += [
            ("property", "og:image", landing.image),
            ("property", "og:image:alt", landing.image_alt),
            ("name", "twitter:image", landing.image),
            ("name", "twitter:image:alt", landing.image_alt),
        ]
    if landing.twitter_site:
        meta.append(("name", "twitter:site", landing.twitter_site))
    head = "".join(f'<meta {a}="{escape(k)}" content="{escape(v)}">' for a, k, v in meta)
    head += f'<link rel="canonical" href="{escape(url)}">'
    return head


def _store_links(landing: Landing, lead: str = "") -> str:
    """The app stores' links the content names, each under its store's name."""
    stores = [
        (name, link)
        for name, link in (("App Store", landing.app_store_url), ("Google Play", landing.play_store_url))
        if link
    ]
    if not stores:
        return ""
    links = " ".join(f'<a href="{escape(link)}" rel="noopener">{escape(name)}</a>' for name, link in stores)
    return f'<p class="stores">{escape(lead)}{links}</p>'


def _missing(ctx: Context, expired: bool) -> str:
    landing = program(ctx).landing
    return missing_page(ctx, landing.expired_title if expired else landing.not_found_title)


def missing_page(ctx: Context, title: str, text: str | None = None) -> str:
    """The friendly page of a shared link that does not work (unknown, expired, used up)."""
    landing = program(ctx).landing
    body = (
        f"<h1>{escape(title)}</h1><p>{escape(text or landing.not_found_body)}</p>"
        + _store_links(landing)
        + f"<small>{escape(landing.site_name)}</small>"
    )
    return _doc(title, "", body)


_PAGE_CACHE_MAX = 50_000


async def landing_page(ctx: Context, code: str, ip: str, user_agent: str) -> Page:
    """The page for a code, with its click recorded; a friendly page with 404 (unknown) or 410
    (a code its member replaced) otherwise."""
    content = program(ctx)
    owner = await find_code(ctx, code) if content.enabled else None
    if owner is None or owner.retired:
        return Page(410 if owner is not None else 404, _missing(ctx, owner is not None))
    recorder(ctx).add(owner, ip, user_agent)
    pages: dict[tuple[str, str, str, str], str] = ctx.extras.setdefault("referral_pages", {})
    key = (owner.code, owner.display, owner.name or "", ctx.content.digest)
    html = pages.get(key)
    if html is None:
        if len(pages) >= _PAGE_CACHE_MAX:
            pages.clear()
        html = pages[key] = render(ctx, owner)
    return Page(200, html)
