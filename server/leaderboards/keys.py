"""Redis keys of the boards, how a score and its tie-break become one sorted-set score, and the
scripts that write and read a board period.

Every key of one board period shares the hash tag `{<board>:<period>}`, so a board period lives
in one Redis Cluster hash slot and each script touches one slot:

    <prefix>lb:{weekly-points:2026-W48}:g        the global standings (sorted set)
    <prefix>lb:{...}:t:<tier>  :team:<team>       the same scores, per tier and per team
    <prefix>lb:{...}:c:<level>:<n>                a league cohort
    <prefix>lb:{...}:r  :rj                       rookies, and when each signed up (for aging out)
    <prefix>lb:{...}:m                            member -> "version<TAB>scopes<TAB>score<TAB>name"
    <prefix>lb:{...}:k                            the scope keys in use (for a rebuild)
    <prefix>lb:{...}:built                        present while the index is known complete (a
                                                  Redis that loses its data loses it too)
    <prefix>lb:{...}:rebuilding                   held by the one process rebuilding the period

Ties: the sorted-set score is `score * 2**24 + slot`, where the slot is the moment the member
reached the score, as one of 2**24 equal slots of the period (5 ms for a day, 36 ms for a week,
160 ms for a month, 3 minutes for an all-time board over its 100 years); a descending board stores
`2**24 - 1 - slot` so that the earlier member ranks first. Doubles hold integers up to 2**53
exactly, so scores between -536,870,911 and 536,870,911 keep their order exactly; scores beyond
saturate in Redis (they keep their exact value in SQL and in what the API shows). Members tied in
the same slot rank by member id (descending on a descending board: the sorted set's own order).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from server.leaderboards.periods import Span

if TYPE_CHECKING:
    from server.context import Context

SLOT_BITS = 24
SLOTS = 1 << SLOT_BITS
MAX_SCORE = (1 << (53 - SLOT_BITS)) - 1  # 536,870,911


def base_key(prefix: str, board_id: str, period: str) -> str:
    """The common start of every key of a board period; its `{...}` is the cluster hash tag."""
    return f"{prefix}lb:{{{board_id}:{period}}}"


def base(ctx: Context, board_id: str, period: str) -> str:
    return base_key(ctx.redis.prefix, board_id, period)


def built_key(base: str) -> str:
    """The marker of a board period whose index was built from SQL (beside its keys, in its slot)."""
    return base + ":built"


def rebuild_lock_key(base: str) -> str:
    return base + ":rebuilding"


def rate_key(ctx: Context, board_id: str, member_id: str) -> str:
    return ctx.redis.key("lb", "said", board_id, member_id)


def team_rate_key(ctx: Context, board_id: str, team_id: str) -> str:
    """When a team was last told its rank on a board that ranks teams (beside members' own)."""
    return ctx.redis.key("lb", "said-team", board_id, team_id)


def slot_of(span: Span, reached_at: datetime) -> int:
    """The tie-break slot of an instant within its period (clamped to the period)."""
    offset = (reached_at - span.start).total_seconds() / span.length.total_seconds()
    return min(max(int(offset * SLOTS), 0), SLOTS - 1)


def encode(score: int, slot: int, order: str) -> int:
    clamped = min(max(score, -MAX_SCORE), MAX_SCORE)
    return clamped * SLOTS + (SLOTS - 1 - slot if order == "desc" else slot)


def scope_keys(
    tier: str | None, team: str | None, cohort: str | None, rookie: bool, scopes: Sequence[str]
) -> list[str]:
    """The scope suffixes a member's score is indexed under, besides the global one."""
    out = []
    if "tier" in scopes and tier:
        out.append(f"t:{tier}")
    if "team" in scopes and team:
        out.append(f"team:{team}")
    if cohort:
        out.append(f"c:{cohort}")
    if rookie:
        out.append("r")
    return out


# KEYS: m hash, global set. ARGV: base, member, version, composite, scopes (comma-separated),
# "score<TAB>name", expire-at (0: never), rookie since (ms, or ''), thresholds (comma-separated
# 0-based ranks), order ('d' or 'a').
# Returns {old rank or -1, new rank, old composite or '', then for each threshold the member
# entered: the threshold and the member pushed out of it ('' if none)}
# or {-2} when Redis already holds this version or a newer one (a replay: nothing changes).
APPLY = """
local m, ver = ARGV[2], tonumber(ARGV[3])
local cur = redis.call('HGET', KEYS[1], m)
local old_scopes = ''
if cur then
  local v, sc = string.match(cur, '^(%d+)\\t([^\\t]*)')
  if tonumber(v) >= ver then return {-2} end
  old_scopes = sc
end
local desc = ARGV[10] == 'd'
local function rank(k)
  if desc then return redis.call('ZREVRANK', k, m) end
  return redis.call('ZRANK', k, m)
end
local base, g, expire = ARGV[1], KEYS[2], tonumber(ARGV[7])
local old_rank = rank(g)
local old_comp = redis.call('ZSCORE', g, m)
local keep = {}
for s in string.gmatch(ARGV[5], '[^,]+') do keep[s] = true end
for s in string.gmatch(old_scopes, '[^,]+') do
  if not keep[s] then
    redis.call('ZREM', base .. ':' .. s, m)
    if s == 'r' then redis.call('ZREM', base .. ':rj', m) end
  end
end
local touched = {g, KEYS[1], base .. ':k'}
redis.call('ZADD', g, ARGV[4], m)
for s in pairs(keep) do
  local k = base .. ':' .. s
  redis.call('ZADD', k, ARGV[4], m)
  redis.call('SADD', base .. ':k', s)
  touched[#touched + 1] = k
end
if ARGV[8] ~= '' then
  redis.call('ZADD', base .. ':rj', ARGV[8], m)
  touched[#touched + 1] = base .. ':rj'
end
redis.call('HSET', KEYS[1], m, ARGV[3] .. '\\t' .. ARGV[5] .. '\\t' .. ARGV[6])
if expire > 0 then
  for _, k in ipairs(touched) do redis.call('EXPIREAT', k, expire) end
end
local new_rank = rank(g)
local out = {old_rank or -1, new_rank, old_comp or ''}
for t in string.gmatch(ARGV[9], '[^,]+') do
  local n = tonumber(t)
  if new_rank < n and ((not old_rank) or old_rank >= n) then
    local pushed
    if desc then pushed = redis.call('ZREVRANGE', g, n, n) else pushed = redis.call('ZRANGE', g, n, n) end
    out[#out + 1] = t
    out[#out + 1] = pushed[1] or ''
  end
end
return out
"""

# KEYS: m hash, global set. ARGV: base, mode ('top' or 'around'), start or member, count or
# around, order ('d' or 'a'), scope ('' for global, a suffix, 'cohort' for the member's cohort,
# or 'r' for rookies), rookie cutoff (ms, for 'r'), the member reading (for 'cohort').
# Returns {total, first rank (0-based) or -1, rows}: one string, a line per member of
# "member<TAB>hash value" (one bulk reply parses far faster than a list of them).
READ = """
local base, mode, desc = ARGV[1], ARGV[2], ARGV[5] == 'd'
local key = KEYS[2]
local scope = ARGV[6]
if scope == 'cohort' then
  local cur = redis.call('HGET', KEYS[1], ARGV[8])
  if not cur then return {0, -1} end
  local sc = string.match(cur, '^%d+\\t([^\\t]*)')
  local c = string.match(sc, 'c:[^,]+')
  if not c then return {0, -1} end
  key = base .. ':' .. c
elseif scope ~= '' then
  key = base .. ':' .. scope
end
if scope == 'r' then
  local aged = redis.call('ZRANGEBYSCORE', base .. ':rj', '-inf', '(' .. ARGV[7], 'LIMIT', 0, 5000)
  if #aged > 0 then
    redis.call('ZREM', key, unpack(aged))
    redis.call('ZREM', base .. ':rj', unpack(aged))
  end
end
local total = redis.call('ZCARD', key)
local first, last
if mode == 'top' then
  first = tonumber(ARGV[3])
  last = first + tonumber(ARGV[4]) - 1
else
  local r
  if desc then r = redis.call('ZREVRANK', key, ARGV[3]) else r = redis.call('ZRANK', key, ARGV[3]) end
  if not r then return {total, -1} end
  local k = tonumber(ARGV[4])
  first = math.max(r - k, 0)
  last = r + k
end
local members
if desc then members = redis.call('ZREVRANGE', key, first, last)
else members = redis.call('ZRANGE', key, first, last) end
if #members == 0 then return {total, first, ''} end
local values = redis.call('HMGET', KEYS[1], unpack(members))
local rows = {}
for i, mm in ipairs(members) do rows[i] = mm .. '\\t' .. (values[i] or '') end
return {total, first, table.concat(rows, '\\n')}
"""
APPLY_SHA = hashlib.sha1(APPLY.encode()).hexdigest()
READ_SHA = hashlib.sha1(READ.encode()).hexdigest()
