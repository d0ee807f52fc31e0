"""The three-node Redis Cluster of `tests.support.RedisClusterServers`, and what redis-py's async
RedisCluster does on it: slot routing, Lua scripts, pipelines and multi-key commands on one slot."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import RedisCluster
from redis.exceptions import CrossSlotTransactionError, NoScriptError, RedisClusterException

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


async def test_scripts_in_cluster_pipeline(rc: RedisCluster) -> None:
    a, b = board_keys()
    tags = list(tags_on_distinct_nodes(rc).values())
    script = rc.register_script(ZADD_BOTH)
    pipe = rc.pipeline(transaction=False)

    # EVALSHA and SCRIPT LOAD are on redis-py's PIPELINE_BLOCKED_COMMANDS list for cluster pipelines:
    # the methods raise at once, and so does an AsyncScript called with the pipeline as client.
    with pytest.raises(RedisClusterException, match="evalsha is blocked"):
        pipe.evalsha(script.sha, 2, a, b, 1, "m")
    with pytest.raises(RedisClusterException, match="script_load is blocked"):
        pipe.script_load(ZADD_BOTH)
    with pytest.raises(RedisClusterException, match="evalsha is blocked"):
        await script(keys=[a, b], args=[1, "m"], client=pipe)
    assert len(pipe) == 0

    # EVAL is not blocked: routed by its keys like any command (and it caches the script on that node).
    pipe.eval(ZADD_BOTH, 2, a, b, 1, "m1")
    pipe.eval(ZADD_BOTH, 2, tags[0] + ":a", tags[0] + ":b", 1, "m1")
    pipe.set(tags[1] + ":k", "v")
    assert await pipe.execute() == [2, 2, True]

    # Raw EVALSHA through execute_command is not blocked and is routed by its keys.
    # Without the script on a node the pipeline still runs the rest, then raises NoScriptError
    # (no automatic SCRIPT LOAD, unlike AsyncScript and the non-cluster Pipeline).
    assert await rc.script_flush() is True
    pipe = rc.pipeline(transaction=False)
    pipe.execute_command("EVALSHA", script.sha, 2, a, b, 1, "m2")
    pipe.set(tags[2] + ":k", "v")
    with pytest.raises(NoScriptError):
        await pipe.execute()
    assert await rc.get(tags[2] + ":k") == "v"
    pipe.execute_command("EVALSHA", script.sha, 2, a, b, 1, "m2")
    results = await pipe.execute(raise_on_error=False)
    assert isinstance(results[0], NoScriptError)

    # RedisCluster.script_load sends SCRIPT LOAD to every primary, after which EVALSHA works on any slot.
    assert await rc.script_load(ZADD_BOTH) == script.sha
    pipe = rc.pipeline(transaction=False)
    pipe.execute_command("EVALSHA", script.sha, 2, a, b, 1, "m2")
    for tag in tags:
        pipe.execute_command("EVALSHA", script.sha, 2, tag + ":a", tag + ":b", 1, "m2")
    assert await pipe.execute() == [4, 4, 2, 2]

    # Keys of two slots in one EVALSHA are refused when the pipeline is executed.
    pipe = rc.pipeline(transaction=False)
    pipe.execute_command("EVALSHA", script.sha, 2, tags[0] + ":a", tags[1] + ":b", 1, "m")
    with pytest.raises(RedisClusterException, match="same key slot"):
        await pipe.execute()

    # In a transactional pipeline raw EVALSHA works too (one slot only).
    pipe = rc.pipeline(transaction=True)
    pipe.execute_command("EVALSHA", script.sha, 2, a, b, 1, "m3")
    pipe.zcard(a)
    assert await pipe.execute() == [6, 3]
