"""Gossip membership between real `meshfs node` processes on loopback:
convergence, failure detection (suspect after --fail-after, dropped after
--cleanup-after), rejoin after a restart, and garbage on POST /v1/gossip.

Timings are scaled down (200 ms gossip interval, 1.5 s / 4 s timeouts) so the
whole file runs in well under a minute."""
import json
import time

import pytest

import harness

INTERVAL_MS = 200
FAIL_MS = 1500
CLEANUP_MS = 4000
FAST = ["--gossip-interval", str(INTERVAL_MS), "--fail-after", str(FAIL_MS),
        "--cleanup-after", str(CLEANUP_MS)]


def members(node):
    status, body, _ = harness.http("GET", node.url + "/v1/members", timeout=5)
    assert status == 200, f"GET /v1/members on {node.addr} -> {status}: {body[:200]!r}"
    return json.loads(body)


def states(node):
    """{addr: state} of one node's table."""
    return {m["addr"]: m["state"] for m in members(node)}


def require_membership_routes(node):
    """Skips (with the reason) when this build's node does not serve gossip yet."""
    status, _, _ = harness.http("GET", node.url + "/v1/members", timeout=5)
    if status == 404:
        pytest.skip("this meshfs node does not serve GET /v1/members yet")
    status, _, _ = harness.http("POST", node.url + "/v1/gossip", body=b"{}", timeout=5)
    if status == 404:
        pytest.skip("this meshfs node does not serve POST /v1/gossip yet")


def wait_for(what, predicate, deadline, nodes=()):
    end = time.time() + deadline
    while time.time() < end:
        if predicate():
            return time.time()
        time.sleep(0.05)
    tables = "\n".join(f"{n.addr}: {states(n)}" for n in nodes if n.alive())
    raise AssertionError(f"{what} not reached within {deadline}s\n{tables}\n"
                         + "\n".join(n.describe() for n in nodes))


def all_alive(nodes, expected):
    want = {n.addr for n in expected}
    for n in nodes:
        s = states(n)
        if set(s) != want or any(v != "alive" for v in s.values()):
            return False
    return True


def gossip_message(sender, addr, heartbeat, incarnation=1, extra=()):
    me = {"id": sender, "addr": addr, "state": "alive", "incarnation": incarnation,
          "heartbeat": heartbeat, "coord": {"vec": [0.0, 0.0], "height": 0.01, "error": 1.5},
          "capacity_bytes": 1000, "free_bytes": 1000}
    return json.dumps({"magic": "meshfs-gossip", "version": 1, "sender": sender,
                       "members": [me] + list(extra)}).encode()


@pytest.fixture
def five(cluster):
    nodes = cluster(5, extra=FAST)
    require_membership_routes(nodes[0])
    start = time.time()
    wait_for("5 nodes listing each other alive", lambda: all_alive(nodes, nodes), 10, nodes)
    print(f"5 nodes converged {time.time() - start:.2f}s after the last one started")
    return nodes


def test_five_nodes_converge(five):
    infos = {n.addr: n.get_json("/v1/info") for n in five}
    for n in five:
        table = members(n)
        assert len(table) == 5
        assert table[0]["addr"] == n.addr, "a node lists itself first"
        for m in table:
            assert set(m) >= {"id", "addr", "state", "heartbeat", "incarnation", "coord",
                              "capacity_bytes", "free_bytes"}, m
            assert m["id"] == infos[m["addr"]]["id"], "member ids are the nodes' ids"
            assert set(m["coord"]) == {"vec", "height", "error"} and len(m["coord"]["vec"]) == 2
            assert m["capacity_bytes"] == infos[m["addr"]]["capacity_bytes"]
    # Heartbeats progress everywhere.
    before = {m["addr"]: m["heartbeat"] for m in members(five[4])}
    time.sleep(4 * INTERVAL_MS / 1000)
    after = {m["addr"]: m["heartbeat"] for m in members(five[4])}
    assert all(after[a] > before[a] for a in before), (before, after)
    # Ping and info carry the coordinate; metrics count members by state.
    ping = five[2].get_json("/v1/ping")
    assert set(ping["coord"]) == {"vec", "height", "error"}
    status, body, _ = harness.http("GET", five[2].url + "/metrics")
    assert status == 200
    assert 'meshfs_members{state="alive"} 5' in body.decode()


def test_kill_suspect_drop_and_rejoin(five):
    victim = five[3]
    survivors = [n for n in five if n is not victim]
    old = {m["addr"]: m for m in members(five[0])}[victim.addr]
    victim.kill9()
    killed = time.time()
    suspect_at, dropped_at = {}, {}
    while len(dropped_at) < len(survivors) and time.time() - killed < CLEANUP_MS / 1000 + 6:
        now = time.time() - killed
        for n in survivors:
            s = states(n)
            for addr, state in s.items():
                if addr != victim.addr:
                    assert state == "alive", f"{n.addr} sees healthy {addr} as {state}"
            if s.get(victim.addr) == "suspect":
                suspect_at.setdefault(n.addr, now)
            if victim.addr not in s:
                dropped_at.setdefault(n.addr, now)
        time.sleep(0.05)
    print("suspected after", {a: round(t, 2) for a, t in suspect_at.items()})
    print("dropped after", {a: round(t, 2) for a, t in dropped_at.items()})
    assert set(dropped_at) == {n.addr for n in survivors}, "every survivor drops the dead node"
    assert set(suspect_at) == {n.addr for n in survivors}, "and suspects it first"
    # The last heartbeat a survivor heard may be a few intervals older than the kill.
    lag = 4 * INTERVAL_MS / 1000
    for addr in suspect_at:
        assert FAIL_MS / 1000 - lag <= suspect_at[addr] <= FAIL_MS / 1000 + 2, addr
        assert CLEANUP_MS / 1000 - lag <= dropped_at[addr] <= CLEANUP_MS / 1000 + 2, addr
    # Dropped nodes are counted as dead in the metrics (tombstones).
    _, body, _ = harness.http("GET", five[0].url + "/metrics")
    assert 'meshfs_members{state="dead"} 1' in body.decode()

    # Restart on the same data directory: same id, new incarnation, heartbeat
    # from zero, and everyone lists it alive again.
    victim.restart(join=[five[0].addr], extra=FAST)
    wait_for("the restarted node rejoining", lambda: all_alive(five, five), 10, five)
    new = {m["addr"]: m for m in members(five[1])}[victim.addr]
    assert new["id"] == old["id"]
    assert new["incarnation"] > old["incarnation"]
    assert new["heartbeat"] < old["heartbeat"] + 100


def test_restarted_seed_without_join_is_found(five):
    seed = five[0]
    others = five[1:]
    seed.kill9()
    wait_for("the seed being suspected",
             lambda: all(states(n).get(seed.addr) != "alive" for n in others), 10, others)
    # No --join: the others' probes of suspect and dropped members find it.
    seed.restart(extra=FAST)
    wait_for("the seed found again", lambda: all_alive(five, five), 10, five)


def test_garbage_gossip_rejected_table_unchanged(five):
    node = five[1]
    before = members(node)
    garbage = [
        b"",
        b"not json",
        b"{}",
        b"[]",
        b"[" * 100000,
        b'{"magic":"meshfs-gossip","version":1}',
        b'{"magic":"meshfs-gossip","version":2,"sender":"x","members":[]}',
        # Well-formed except for one entry: nothing of it may be applied.
        gossip_message("intruder", "127.0.0.1:1", 5, extra=[
            {"id": "bad", "addr": "127.0.0.1:2", "state": "alive", "incarnation": 1,
             "heartbeat": 1, "coord": {"vec": [1e300, 0], "height": 0, "error": 1},
             "capacity_bytes": 0, "free_bytes": 0}]),
        gossip_message("../../etc", "127.0.0.1:1", 5),
        gossip_message("intruder", "no-port", 5),
        b" " * (1024 * 1024 + 1),
    ]
    for body in garbage:
        status, reply, _ = harness.http("POST", node.url + "/v1/gossip", body=body)
        assert status == 400, f"{body[:60]!r} -> {status} {reply[:100]!r}"
        assert reply, "a 400 says why"
    after = members(node)
    assert [(m["id"], m["addr"], m["state"], m["incarnation"]) for m in after] == \
           [(m["id"], m["addr"], m["state"], m["incarnation"]) for m in before]
    for b, a in zip(before, after):
        assert a["heartbeat"] >= b["heartbeat"], "no heartbeat went backwards"
    status, _, _ = harness.http("GET", node.url + "/v1/gossip")
    assert status == 405
    assert node.alive()


def test_ghost_member_is_dropped_and_replay_does_not_revive_it(five):
    """Gossip is how members arrive: a sender that never makes progress is
    suspected and dropped like any dead node, and replaying its last message
    afterwards does not bring it back (tombstone)."""
    node = five[2]
    ghost = gossip_message("ghost-node", "127.0.0.1:9", 7)
    status, reply, _ = harness.http("POST", node.url + "/v1/gossip", body=ghost)
    assert status == 200
    answer = json.loads(reply)
    assert answer["magic"] == "meshfs-gossip" and answer["version"] == 1
    # The reply is the node's own table, already merged with the message.
    assert len(answer["members"]) == 6
    assert answer["members"][0]["addr"] == node.addr
    assert states(node).get("127.0.0.1:9") == "alive"
    wait_for("the ghost suspected", lambda: states(node).get("127.0.0.1:9") == "suspect",
             FAIL_MS / 1000 + 3, five)
    wait_for("the ghost dropped everywhere",
             lambda: all("127.0.0.1:9" not in states(n) for n in five), CLEANUP_MS / 1000 + 4,
             five)
    status, _, _ = harness.http("POST", node.url + "/v1/gossip", body=ghost)
    assert status == 200, "a replay is well-formed; it is just old news"
    assert "127.0.0.1:9" not in states(node)
    # Newer news (a higher heartbeat) is real progress and re-adds it.
    status, _, _ = harness.http("POST", node.url + "/v1/gossip",
                                body=gossip_message("ghost-node", "127.0.0.1:9", 8))
    assert status == 200
    assert states(node).get("127.0.0.1:9") == "alive"
