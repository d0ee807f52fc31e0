"""A badge's picture when the content gives none: a medal drawn from its name, rarity and level.

Every badge the API shows has an image that answers: the brand's own (an absolute URL in the
content), else this drawing, served by the server at `GET /v1/badges/{badge_id}/image.svg`.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

from server.badges.content import Badge
from server.errors import ProblemError

if TYPE_CHECKING:
    from server.context import Context

# The medal's face by rarity, and its rim by level name (bronze, silver, gold), else the face's.
_FACE = {
    "common": "#6b7280",
    "uncommon": "#15803d",
    "rare": "#1d4ed8",
    "epic": "#7e22ce",
    "legendary": "#b45309",
}
_RIM = {"bronze": "#b87333", "silver": "#a8a9ad", "gold": "#d4af37"}


def is_own_url(image: str) -> bool:
    """Whether the content's image is one the brand serves itself (an absolute http or https URL)
    or carries within (a data URI); a path has nothing to answer it."""
    return image.lower().startswith(("https://", "http://", "data:image/"))


def image_url(ctx: Context, badge: Badge, level: int) -> str:
    """The address of a badge's picture at `level` (1 for one not earned yet): the brand's own when
    the content gives an absolute URL, else the one the server draws."""
    own = badge.level_image(level)
    if own is not None and is_own_url(own):
        return own
    base = ctx.settings.public_base_url.rstrip("/")
    return f"{base}/v1/badges/{badge.id}/image.svg" + (f"?level={level}" if badge.levels else "")


def initials(name: str) -> str:
    """Up to two letters for the medal: the first of the first two words ("Big spender": "BS")."""
    words = [w for w in name.split() if w[:1].isalnum()]
    return "".join(w[0] for w in words[:2]).upper() or "?"


def draw(badge: Badge, level: int) -> str:
    """The badge at `level` as an SVG document (256 px square, scalable)."""
    face = _FACE.get(badge.rarity, _FACE["common"])
    rim = _RIM.get((badge.level_name(level) or "").lower(), face)
    name = badge.level_name(level)
    title = f"{badge.name} ({name})" if name else badge.name
    letters = initials(badge.name)
    size = 96 if len(letters) == 1 else 80
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 256 256" width="256" height="256" '
        f'role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>"
        f'<circle cx="128" cy="128" r="124" fill="{rim}"/>'
        f'<circle cx="128" cy="128" r="104" fill="{face}"/>'
        '<circle cx="128" cy="128" r="104" fill="none" stroke="#fff" stroke-opacity="0.35" stroke-width="4"/>'
        f'<text x="128" y="128" dy="0.35em" text-anchor="middle" font-family="system-ui,sans-serif" '
        f'font-weight="700" font-size="{size}" fill="#ffffff">{escape(letters)}</text>'
        "</svg>"
    )


def drawing(ctx: Context, badge_id: str, level: int) -> str:
    """The drawn picture of a badge of the content serving (404 `badge_not_found` for no such
    badge); a level beyond the badge's shows its highest."""
    catalog = ctx.content.get("badges")
    badge = catalog.get(badge_id) if catalog is not None else None
    if badge is None:
        raise ProblemError(404, "badge_not_found", f"There is no badge '{badge_id}'.")
    return draw(badge, max(1, min(level, badge.level_count)))
