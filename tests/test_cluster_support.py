"""The three-node Redis Cluster of `tests.support.RedisClusterServers`, and what redis-py's async
RedisCluster does on it: slot routing, Lua scripts, pipelines and multi-key commands on one slot;
then the boards' own scripts run through `server.redis.AutoPipeline` on it, as the server does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.asyncio import RedisCluster
from redis.exceptions import CrossSlotTransactionError, RedisClusterException

from server.leaderboards import keys
from server.redis import AutoPipeline
from tests.support import RedisClusterServers, unique

BOARD = "{board:2026-W47}"

# ZADD the member to both boards, return the sum of their ZCARDs.
ZADD_BOTH = """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2])
return redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[2])
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterServers]:
    servers = RedisClusterServers().start()
    yield servers
    servers.stop()


@pytest.fixture
async def rc(cluster: RedisClusterServers) -> AsyncIterator[RedisCluster]:
    client = RedisCluster.from_url(cluster.url, decode_responses=True)
    await client.initialize()
    yield client
    await client.aclose()


def tags_on_distinct_nodes(rc: RedisCluster, count: int = 3) -> dict[str, str]:
    """Hash tags, each held by a different node: {node name: "{tag}"}."""
    base, found = unique("tag"), {}
    for i in range(1000):
        tag = f"{{{base}-{i}}}"
        found.setdefault(rc.get_node_from_key(tag).name, tag)
        if len(found) == count:
            return found
    raise AssertionError("no hash tags found for every node")


def board_keys() -> list[str]:
    run = unique("b")
    return [f"{BOARD}:{run}:all", f"{BOARD}:{run}:team"]


async def test_cluster_has_three_masters_and_spreads_hash_tags(
    cluster: RedisClusterServers, rc: RedisCluster
) -> None:
    primaries = rc.get_primaries()
    assert sorted(n.port for n in primaries) == cluster.ports
    assert rc.get_replicas() == []

    tags = tags_on_distinct_nodes(rc)
    assert len(tags) == 3
    slots = set()
    for node_name, tag in tags.items():
        key = tag + ":x"
        slot = await rc.cluster_keyslot(key)  # the server's CLUSTER KEYSLOT agrees with the client's
        assert slot == rc.keyslot(key) == rc.keyslot(tag)
        assert rc.get_node_from_key(key).name == node_name
        slots.add(slot)
        await rc.set(key, node_name)
    assert len(slots) == 3
    # Each key really lives on its node.
    for node_name, tag in tags.items():
        node = rc.get_node(node_name=node_name)
        assert await rc.execute_command("GET", tag + ":x", target_nodes=node) == node_name


async def test_script_on_two_keys_of_one_hash_tag(rc: RedisCluster) -> None:
    a, b = board_keys()
    assert rc.keyslot(a) == rc.keyslot(b)
    script = rc.register_script(ZADD_BOTH)

    assert await script(keys=[a, b], args=[10, "m1"]) == 2
    assert await script(keys=[a, b], args=[20, "m2"]) == 4
    assert await rc.zrange(a, 0, -1, withscores=True) == [("m1", 10.0), ("m2", 20.0)]

    # The first call's NoScriptError made AsyncScript run SCRIPT LOAD, which goes to every primary.
    for node in rc.get_primaries():
        assert await rc.execute_command("SCRIPT EXISTS", script.sha, target_nodes=node) == [True]

    # After SCRIPT FLUSH (all primaries) AsyncScript reloads the script by itself.
    assert await rc.script_flush() is True
    assert await rc.script_exists(script.sha) == [False]
    assert await script(keys=[a, b], args=[30, "m3"]) == 6

    # Keys of different slots are refused by the client before anything is sent.
    tags = list(tags_on_distinct_nodes(rc, 2).values())
    with pytest.raises(RedisClusterException, match="same key slot"):
        await script(keys=[tags[0] + ":a", tags[1] + ":b"], args=[1, "m"])


async def test_multi_key_commands_on_one_slot(rc: RedisCluster) -> None:
    a, b = board_keys()
    await rc.zadd(a, {"x": 1, "y": 2})
    await rc.zadd(b, {"y": 5, "z": 3})
    union = f"{BOARD}:{unique('u')}"
    assert await rc.zunionstore(union, [a, b]) == 3
    assert await rc.zscore(union, "y") == 7
    await rc.mset({f"{BOARD}:m1": "1", f"{BOARD}:m2": "2"})
    assert await rc.mget(f"{BOARD}:m1", f"{BOARD}:m2") == ["1", "2"]

    t1, t2 = list(tags_on_distinct_nodes(rc, 2).values())
    with pytest.raises(RedisClusterException, match="same key slot"):
        await rc.mget(t1 + ":k", t2 + ":k")
    with pytest.raises(RedisClusterException, match="same key slot"):
        await rc.zunionstore(t1 + ":u", [t1 + ":k", t2 + ":k"])
    # The *_nonatomic helpers and DEL/EXISTS/UNLINK/TOUCH split by slot instead.
    assert await rc.mset_nonatomic({t1 + ":k": "a", t2 + ":k": "b"}) == [True, True]
    assert await rc.mget_nonatomic(t1 + ":k", t2 + ":k") == ["a", "b"]
    assert await rc.exists(t1 + ":k", t2 + ":k") == 2
    assert await rc.delete(t1 + ":k", t2 + ":k") == 2

    # A transactional pipeline (MULTI/EXEC) works when every key is in one slot.
    pipe = rc.pipeline(transaction=True)
    pipe.zadd(a, {"w": 9})
    pipe.zcard(a)
    assert await pipe.execute() == [1, 3]
    pipe = rc.pipeline(transaction=True)
    pipe.set(t1 + ":k", 1)
    pipe.set(t2 + ":k", 1)
    with pytest.raises(CrossSlotTransactionError):
        await pipe.execute()


async def test_pipeline_across_slots(rc: RedisCluster) -> None:
    tags = list(tags_on_distinct_nodes(rc).values())
    pipe = rc.pipeline(transaction=False)
    for i, tag in enumerate(tags):
        pipe.set(tag + ":k", i)
        pipe.zadd(tag + ":z", {"m": i})
        pipe.incr(tag + ":k")
    for tag in tags:
        pipe.get(tag + ":k")
    assert await pipe.execute() == [True, 1, 1, True, 1, 2, True, 1, 3, "1", "2", "3"]

    # A multi-key DEL in a cluster pipeline is split by slot: one result per slot.
    pipe = rc.pipeline(transaction=False)
    pipe.delete(*(tag + ":k" for tag in tags))
    assert await pipe.execute() == [1, 1, 1]


def board_bases_on_distinct_nodes(rc: RedisCluster, prefix: str, count: int = 3) -> list[str]:
    """Keys' common start of board periods (`keys.base_key`), each held by a different node."""
    run, found = unique("board"), {}
    for i in range(1000):
        b = keys.base_key(prefix, f"{run}-{i}", "2026-W47")
        found.setdefault(rc.get_node_from_key(b).name, b)
        if len(found) == count:
            return list(found.values())
    raise AssertionError("no board periods found for every node")


def apply_args(b: str, member: str, version: int, score: int, tops: str = "") -> list[Any]:
    """APPLY's ARGV as `index.apply_scores` sends it (global scope only, no expiry, descending)."""
    return [
        b,
        member,
        version,
        keys.encode(score, 0, "desc"),
        "",
        f"{score}\t{member.upper()}",
        0,
        "",
        tops,
        "d",
    ]


def read_args(b: str) -> list[Any]:
    """READ's ARGV as `standings._live` sends it for the global top 10 of a descending board."""
    return [b, "top", 0, 10, "d", "", 0, ""]


async def test_board_scripts_through_the_auto_pipeline_on_a_cluster(
    rc: RedisCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the boards rely on when their Redis is a cluster: `server.redis.AutoPipeline` sends the
    APPLY and READ calls of one moment, for board periods held by different nodes, as one cluster
    pipeline whose answers each reach their own caller; a node without the scripts answers
    NoScriptError, and `AutoPipeline.evalsha` loads the script and calls again."""
    pipelines: list[object] = []
    real_pipeline = rc.pipeline

    def counted_pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = real_pipeline(*args, **kwargs)
        pipelines.append(pipe)
        return pipe

    monkeypatch.setattr(rc, "pipeline", counted_pipeline)
    auto = AutoPipeline(rc)
    bases = board_bases_on_distinct_nodes(rc, unique("t") + ":")

    def apply(b: str, *args: Any, **kwargs: Any) -> Any:
        return auto.evalsha(keys.APPLY_SHA, keys.APPLY, [b + ":m", b + ":g"], apply_args(b, *args, **kwargs))

    def read(b: str) -> Any:
        return auto.evalsha(keys.READ_SHA, keys.READ, [b + ":m", b + ":g"], read_args(b))

    # No node has the scripts: each caller hears NoScriptError from the pipeline, loads the script
    # and calls again. Every board gets its first member; periods never written read empty.
    assert await rc.script_flush() is True
    empty = board_bases_on_distinct_nodes(rc, unique("t") + ":")
    first = await asyncio.gather(
        *(apply(b, "a", 1, 10 * (n + 1)) for n, b in enumerate(bases)), *(read(b) for b in empty)
    )
    assert first == [[-1, 0, ""]] * 3 + [[0, 0, ""]] * 3
    assert len(pipelines) >= 1  # the first try; the calls again go as their scripts are loaded
    for node in rc.get_primaries():
        exists = await rc.execute_command("SCRIPT EXISTS", keys.APPLY_SHA, keys.READ_SHA, target_nodes=node)
        assert exists == [True, True], node.name

    # One moment's calls on three nodes: one pipeline, each answer to its caller, in call order on
    # each board (rank 0 is the top of a descending board; "1" asks who was pushed out of the top 1).
    pipelines.clear()
    calls = []
    for n, b in enumerate(bases):
        calls += [
            apply(b, "b", 1, 5 + n),  # below a: rank 1
            apply(b, "c", 1, 100 + n, tops="1"),  # to the top, pushing a out of it
            apply(b, "a", 1, 999),  # a replay of a version Redis holds: nothing changes
            apply(b, "b", 2, 50 + n),  # b's newer version: from rank 2 to rank 1
        ]
    results = await asyncio.gather(*calls)
    assert len(pipelines) == 1
    for n, b in enumerate(bases):
        b_then = str(keys.encode(5 + n, 0, "desc"))  # ZSCORE's text of b's composite score
        assert results[4 * n : 4 * n + 4] == [
            [-1, 1, ""],
            [-1, 0, "", "1", "a"],
            [-2],
            [2, 1, b_then],
        ], b

    # Reads of the three boards together, then one alone (sent without a pipeline).
    pipelines.clear()
    standings = await asyncio.gather(*(read(b) for b in bases))
    assert len(pipelines) == 1
    for n, out in enumerate(standings):
        assert out == [
            3,
            0,
            f"c\t1\t\t{100 + n}\tC\nb\t2\t\t{50 + n}\tB\na\t1\t\t{10 * (n + 1)}\tA",
        ], bases[n]
    assert await read(bases[1]) == standings[1]
    assert len(pipelines) == 1
