"""The storage peer (`meshfs node`): the slice API, bad input, faults,
pipeline replication, root records and signed deletes, against real node
processes on loopback."""
import json
import os
import signal
import socket
import threading
import time

import harness
from harness import http
import node_util as nu


def put(node, blob, headers=None):
    return http("PUT", f"{node.url}/v1/slices/{nu.address(blob)}", blob, headers or {})


def info(node):
    return node.get_json("/v1/info")


def test_slice_put_get_head_has(cluster):
    (n,) = cluster(1)
    blob = nu.random_blob(100_000)
    addr = nu.address(blob)
    st, body, _ = put(n, blob)
    assert st == 201, body
    assert json.loads(body) == {"stored_on": [n.addr], "failed": []}
    st, body, hdrs = http("GET", f"{n.url}/v1/slices/{addr}")
    assert st == 200 and body == blob
    assert hdrs["Content-Type"] == "application/octet-stream"
    st, body, hdrs = http("HEAD", f"{n.url}/v1/slices/{addr}")
    assert st == 200 and body == b"" and int(hdrs["Content-Length"]) == len(blob)
    # Idempotent: the same PUT again is 200, stored once.
    st, _, _ = put(n, blob)
    assert st == 200
    missing = nu.address(b"not stored")
    assert http("GET", f"{n.url}/v1/slices/{missing}")[0] == 404
    assert http("HEAD", f"{n.url}/v1/slices/{missing}")[0] == 404
    st, body, _ = http("POST", f"{n.url}/v1/slices/has", json.dumps([addr, missing]).encode())
    assert st == 200 and json.loads(body) == [True, False]
    i = info(n)
    assert i["slices"] == 1 and i["used_bytes"] == len(blob)
    assert set(i) >= {"id", "version", "addr", "capacity_bytes", "used_bytes", "slices", "coord"}
    assert i["addr"] == n.addr
    assert nu.stored_files(n.data) == {addr: blob}


def test_wrong_hash_is_rejected_and_nothing_stored(cluster):
    (n,) = cluster(1)
    blob = nu.random_blob(5000)
    wrong = nu.address(blob + b"x")
    st, body, _ = http("PUT", f"{n.url}/v1/slices/{wrong}", blob)
    assert st == 400 and b"does not match" in body
    assert http("GET", f"{n.url}/v1/slices/{wrong}")[0] == 404
    assert info(n)["slices"] == 0
    assert nu.stored_files(n.data) == {}
    assert os.listdir(n.data / "tmp") == []


def test_malformed_addresses_and_path_traversal(cluster, tmp_path):
    (n,) = cluster(1)
    secret = tmp_path / "secret"
    secret.write_bytes(b"do not serve me")
    good = nu.address(b"abc")
    bad_paths = [
        "/v1/slices/" + good.upper(),
        "/v1/slices/" + good[:-1],
        "/v1/slices/" + good + "0",
        "/v1/slices/" + good[:-1] + "g",
        "/v1/slices/../../etc/passwd",
        "/v1/slices/../../../../" + str(secret),
        "/v1/slices/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "/v1/slices/..%2F..%2Fetc%2Fpasswd",
        "/v1/slices/" + good[:2] + "/" + good,
        "/v1/slices/%00" + good[1:],
        "/v1/slices/",
    ]
    for path in bad_paths:
        for method in ("GET", "PUT", "DELETE"):
            st, body = nu.raw_request(n.addr, method, path, b"abc" if method == "PUT" else b"")
            assert st == 400, f"{method} {path} -> {st} {body!r}"
    assert nu.raw_request(n.addr, "GET", "/v1/roots/../../etc")[0] == 400
    assert nu.raw_request(n.addr, "GET", "/v1/nothing")[0] == 404
    assert nu.raw_request(n.addr, "PATCH", "/v1/slices/" + good)[0] == 405
    assert info(n)["slices"] == 0
    assert secret.read_bytes() == b"do not serve me"


def test_oversized_body_is_413(cluster):
    (n,) = cluster(1)
    blob = b"\0" * (16 * 1024 * 1024 + 64 * 1024)
    st, body, _ = put(n, blob)
    assert st == 413, body
    assert info(n)["slices"] == 0
    # The largest allowed slice still goes in.
    ok = nu.random_blob(16 * 1024 * 1024)
    st, body, _ = put(n, ok)
    assert st == 201, body


def test_full_store_is_507(cluster):
    (n,) = cluster(1, capacity="100K")
    a = nu.random_blob(60_000)
    b = nu.random_blob(60_000)
    assert put(n, a)[0] == 201
    st, body, _ = put(n, b)
    assert st == 507, body
    assert http("GET", f"{n.url}/v1/slices/{nu.address(a)}")[1] == a
    assert http("GET", f"{n.url}/v1/slices/{nu.address(b)}")[0] == 404
    i = info(n)
    assert i["capacity_bytes"] == 100 * 1024 and i["used_bytes"] == 60_000 and i["slices"] == 1
    # An already stored blob is still accepted (idempotent) when full.
    assert put(n, a)[0] == 200


def test_client_disconnecting_mid_put_leaves_nothing(cluster):
    (n,) = cluster(1)
    blob = nu.random_blob(1 << 20)
    addr = nu.address(blob)
    s = socket.create_connection(("127.0.0.1", n.port))
    s.sendall((f"PUT /v1/slices/{addr} HTTP/1.1\r\nHost: x\r\n"
               f"Content-Length: {len(blob)}\r\n\r\n").encode() + blob[: len(blob) // 2])
    time.sleep(0.2)
    s.close()
    time.sleep(0.3)
    assert http("GET", f"{n.url}/v1/slices/{addr}")[0] == 404
    assert info(n)["slices"] == 0
    assert nu.stored_files(n.data) == {}
    # The node is fine afterwards.
    assert put(n, blob)[0] == 201


def test_kill9_during_uploads_then_restart(cluster):
    (n,) = cluster(1)
    stop = threading.Event()
    acked = {}

    def uploader(seed):
        i = 0
        while not stop.is_set():
            blob = os.urandom(200_000 + seed * 1000 + i)
            try:
                st, _, _ = put(n, blob)
                if st in (200, 201):
                    acked[nu.address(blob)] = blob
            except OSError:
                return
            i += 1

    threads = [threading.Thread(target=uploader, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    n.kill9()
    stop.set()
    for t in threads:
        t.join(timeout=20)
    assert acked, "no upload finished before the kill"
    n.restart()
    files = nu.stored_files(n.data)
    # No partial blob under a valid address; every acknowledged one is there.
    for addr, data in files.items():
        assert nu.address(data) == addr
    for addr, blob in acked.items():
        assert files.get(addr) == blob
    i = info(n)
    assert i["slices"] == len(files)
    assert i["used_bytes"] == sum(len(d) for d in files.values())
    assert os.listdir(n.data / "tmp") == []
    for addr in list(acked)[:5]:
        assert http("GET", f"{n.url}/v1/slices/{addr}")[1] == acked[addr]


def test_pipeline_replication_to_three_peers(cluster):
    a, b, c = cluster(3)
    blob = nu.random_blob(300_000)
    addr = nu.address(blob)
    st, body, _ = put(a, blob, {"X-Meshfs-Forward": f"{b.addr},{c.addr}"})
    assert st == 201, body
    reply = json.loads(body)
    assert reply == {"stored_on": [a.addr, b.addr, c.addr], "failed": []}
    for node in (a, b, c):
        assert http("GET", f"{node.url}/v1/slices/{addr}")[1] == blob
    assert "meshfs_forwards_total{result=\"ok\"} 1" in http("GET", a.url + "/metrics")[1].decode()
    # A blob that does not match its address is not passed on.
    bad = nu.random_blob(1000)
    wrong = nu.address(bad + b"!")
    st, _, _ = http("PUT", f"{a.url}/v1/slices/{wrong}", bad,
                    {"X-Meshfs-Forward": f"{b.addr},{c.addr}"})
    assert st == 400
    for node in (a, b, c):
        assert http("GET", f"{node.url}/v1/slices/{wrong}")[0] == 404
        assert info(node)["slices"] == 1


def test_pipeline_with_dead_downstream_peer(cluster):
    a, b, c = cluster(3)
    assert b.stop() == 0
    blob = nu.random_blob(50_000)
    addr = nu.address(blob)
    st, body, _ = put(a, blob, {"X-Meshfs-Forward": f"{b.addr},{c.addr}"})
    assert st == 201, body
    reply = json.loads(body)
    assert reply["stored_on"] == [a.addr, c.addr]
    assert len(reply["failed"]) == 1 and reply["failed"][0].startswith(b.addr)
    assert http("GET", f"{c.url}/v1/slices/{addr}")[1] == blob
    a.allow_log(r"forwarding slice")


def test_bad_forward_header_is_rejected(cluster):
    (n,) = cluster(1)
    blob = nu.random_blob(1000)
    for value in ["nohost", "a:1,,b:2", "host:99999", "x:1," * 20 + "x:1"]:
        st, body, _ = put(n, blob, {"X-Meshfs-Forward": value})
        assert st == 400, (value, body)
    assert info(n)["slices"] == 0
    st, _, _ = put(n, blob, {"X-Meshfs-Owner": "not-a-volume"})
    assert st == 400


def test_root_record_rules(cluster):
    (n,) = cluster(1)
    pk, sk = nu.keypair()
    vol = pk.hex()
    url = f"{n.url}/v1/roots/{vol}"
    assert http("GET", url)[0] == 404
    r5 = nu.root_record(pk, sk, 5)
    st, body, _ = http("PUT", url, r5)
    assert st == 200, body
    assert http("GET", url)[1] == r5
    # Not higher: rejected, state unchanged.
    assert http("PUT", url, nu.root_record(pk, sk, 5))[0] == 409
    assert http("PUT", url, nu.root_record(pk, sk, 4))[0] == 409
    assert http("PUT", url, r5)[0] == 409
    # Bad signature, wrong volume, garbage, truncated, oversized.
    forged = bytearray(nu.root_record(pk, sk, 6))
    forged[-1] ^= 1
    assert http("PUT", url, bytes(forged))[0] == 403
    pk2, sk2 = nu.keypair()
    assert http("PUT", url, nu.root_record(pk2, sk2, 7))[0] == 403
    signed_by_other = nu.root_record(pk, sk2, 8)
    assert http("PUT", url, signed_by_other)[0] == 403
    assert http("PUT", url, b"garbage")[0] == 400
    assert http("PUT", url, r5[:100])[0] == 400
    assert http("PUT", url, b"\0" * (17 << 20))[0] == 413
    assert http("PUT", f"{n.url}/v1/roots/{vol.upper()}", nu.root_record(pk, sk, 9))[0] == 400
    assert http("GET", url)[1] == r5
    # Keep the newest 16.
    records = {}
    for seq in range(6, 26):
        records[seq] = nu.root_record(pk, sk, seq)
        assert http("PUT", url, records[seq])[0] == 200
    assert http("GET", url)[1] == records[25]
    st, body, _ = http("GET", url + "?all=1")
    assert st == 200
    kept = json.loads(body)
    assert kept["volume"] == vol
    assert [r["sequence"] for r in kept["records"]] == list(range(25, 9, -1))
    assert bytes.fromhex(kept["records"][0]["record"]) == records[25]
    # Survives a restart, and so does the node id.
    node_id = info(n)["id"]
    assert len(node_id) == 32
    assert n.stop() == 0
    n.restart()
    assert info(n)["id"] == node_id
    assert http("GET", url)[1] == records[25]
    assert http("PUT", url, nu.root_record(pk, sk, 25))[0] == 409


def test_signed_delete_drops_references(cluster):
    (n,) = cluster(1)
    pa, sa = nu.keypair()
    pb, sb = nu.keypair()
    blob = nu.random_blob(10_000)
    addr = nu.address(blob)
    url = f"{n.url}/v1/slices/{addr}"
    assert put(n, blob, {"X-Meshfs-Owner": pa.hex()})[0] == 201
    assert put(n, blob, {"X-Meshfs-Owner": pb.hex()})[0] == 200

    # Missing headers, bad signature, stale, signed for another address.
    assert http("DELETE", url)[0] == 400
    h = nu.delete_headers(pa, sa, addr)
    h["X-Meshfs-Signature"] = "00" * 64
    assert http("DELETE", url, headers=h)[0] == 403
    assert http("DELETE", url, headers=nu.delete_headers(pa, sa, addr,
                                                         timestamp=int(time.time()) - 3600))[0] == 403
    other = nu.address(b"other")
    assert http("DELETE", url, headers=nu.delete_headers(pa, sa, other))[0] == 403
    assert http("DELETE", url, headers=nu.delete_headers(pa, sb, addr))[0] == 403
    # Garbage and oversized messages.
    h = nu.delete_headers(pa, sa, addr)
    h["X-Meshfs-Nonce"] = "zz" * 16
    assert http("DELETE", url, headers=h)[0] == 400
    h = nu.delete_headers(pa, sa, addr)
    h["X-Meshfs-Owner"] = "a" * 10000
    assert 400 <= http("DELETE", url, headers=h)[0] < 500
    assert http("DELETE", url, b"\0" * (17 << 20), nu.delete_headers(pa, sa, addr))[0] == 413
    assert http("GET", url)[1] == blob

    # A drops its reference: B still holds one.
    h = nu.delete_headers(pa, sa, addr)
    st, body, _ = http("DELETE", url, headers=h)
    assert st == 200 and json.loads(body) == {"removed": False}
    assert http("GET", url)[1] == blob
    # Replay of the same request is rejected.
    assert http("DELETE", url, headers=h)[0] == 403
    # A has no reference left.
    assert http("DELETE", url, headers=nu.delete_headers(pa, sa, addr))[0] == 404
    # B drops the last one: gone.
    st, body, _ = http("DELETE", url, headers=nu.delete_headers(pb, sb, addr))
    assert st == 200 and json.loads(body) == {"removed": True}
    assert http("GET", url)[0] == 404
    i = info(n)
    assert i["slices"] == 0 and i["used_bytes"] == 0
    assert nu.stored_files(n.data) == {}


def test_replayed_delete_rejected_after_restart(cluster):
    (n,) = cluster(1)
    pk, sk = nu.keypair()
    blob = nu.random_blob(1000)
    addr = nu.address(blob)
    url = f"{n.url}/v1/slices/{addr}"
    assert put(n, blob, {"X-Meshfs-Owner": pk.hex()})[0] == 201
    h = nu.delete_headers(pk, sk, addr)
    assert http("DELETE", url, headers=h)[0] == 200
    assert n.stop() == 0
    n.restart()
    assert put(n, blob, {"X-Meshfs-Owner": pk.hex()})[0] == 201
    assert http("DELETE", url, headers=h)[0] == 403
    assert http("GET", url)[1] == blob


def test_garbage_gossip_is_rejected(cluster):
    (n,) = cluster(1)
    before = n.get_json("/v1/members")
    for body in [b"", b"garbage", b"[]", b"{}", json.dumps({"magic": "x"}).encode(),
                 b"{" * 100000, b"\xff" * 1000, b"x" * (2 << 20)]:
        st, _, _ = http("POST", f"{n.url}/v1/gossip", body)
        assert 400 <= st < 500, (body[:20], st)
    after = n.get_json("/v1/members")
    assert [m["id"] for m in after] == [m["id"] for m in before]
    assert http("GET", f"{n.url}/v1/gossip")[0] == 405


def test_ping_info_members_metrics(cluster):
    a, b = cluster(2, extra=["--gossip-interval", "100", "--fail-after", "1000",
                             "--cleanup-after", "3000"])
    ping = a.get_json("/v1/ping")
    assert ping["id"] == info(a)["id"] and "coord" in ping
    deadline = time.time() + 10
    while time.time() < deadline:
        if len(a.get_json("/v1/members")) == 2 and len(b.get_json("/v1/members")) == 2:
            break
        time.sleep(0.1)
    members = a.get_json("/v1/members")
    assert sorted(m["addr"] for m in members) == sorted([a.addr, b.addr])
    for m in members:
        assert set(m) >= {"id", "addr", "state", "heartbeat", "coord"}
    blob = nu.random_blob(1234)
    put(a, blob)
    http("GET", f"{a.url}/v1/slices/{nu.address(blob)}")
    http("GET", f"{a.url}/v1/slices/{nu.address(b'none')}")
    st, body, hdrs = http("GET", a.url + "/metrics")
    assert st == 200 and hdrs["Content-Type"].startswith("text/plain")
    text = body.decode()
    lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if not line.startswith("#"))
    assert lines['meshfs_requests_total{type="slice_put",status="201"}'] == "1"
    assert lines['meshfs_requests_total{type="slice_get",status="200"}'] == "1"
    assert lines['meshfs_requests_total{type="slice_get",status="404"}'] == "1"
    assert lines["meshfs_slice_puts_total"] == "1"
    assert lines["meshfs_slice_gets_total"] == "1"
    assert int(lines["meshfs_received_bytes_total"]) >= 1234
    assert int(lines["meshfs_sent_bytes_total"]) >= 1234
    assert lines["meshfs_slices_stored"] == "1"
    assert lines["meshfs_used_bytes"] == "1234"
    assert lines['meshfs_members{state="alive"}'] == "2"
    assert int(lines["meshfs_request_duration_seconds_count"]) >= 3
    assert lines['meshfs_request_duration_seconds_bucket{le="+Inf"}'] == \
        lines["meshfs_request_duration_seconds_count"]


def test_sigterm_finishes_request_in_flight_and_exits_0(cluster):
    (n,) = cluster(1)
    blob = nu.random_blob(2 << 20)
    addr = nu.address(blob)
    s = socket.create_connection(("127.0.0.1", n.port), timeout=10)
    s.sendall((f"PUT /v1/slices/{addr} HTTP/1.1\r\nHost: x\r\n"
               f"Content-Length: {len(blob)}\r\n\r\n").encode() + blob[:1 << 20])
    time.sleep(0.2)
    n.signal(signal.SIGTERM)
    time.sleep(0.3)
    assert n.alive(), "node exited with a request in flight"
    # New connections are refused while the old one is served.
    try:
        socket.create_connection(("127.0.0.1", n.port), timeout=1).close()
        refused = False
    except OSError:
        refused = True
    assert refused
    s.sendall(blob[1 << 20:])
    reply = s.recv(4096)
    s.close()
    assert reply.startswith(b"HTTP/1.1 201"), reply[:100]
    n.proc.wait(timeout=15)
    assert n.proc.returncode == 0
    assert nu.stored_files(n.data) == {addr: blob}


def test_bad_command_lines(tmp_path):
    for args in (["node", "--data", tmp_path, "--listen", "nohost"],
                 ["node", "--data", tmp_path, "--listen", "127.0.0.1:1", "--join", "a:1,,"],
                 ["node", "--data", tmp_path, "--listen", "127.0.0.1:1", "--capacity", "lots"]):
        p = harness.run(args, check=False, timeout=20)
        assert p.returncode == 2, (args, p.stderr)
        assert p.stderr.startswith("meshfs: ")
    # The address is taken.
    port = harness.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        p = harness.run(["node", "--data", tmp_path, "--listen", f"127.0.0.1:{port}"],
                        check=False, timeout=20)
        assert p.returncode == 1 and "cannot listen" in p.stderr, p.stderr


def test_concurrent_puts_of_one_address(cluster):
    (n,) = cluster(1)
    blob = nu.random_blob(1 << 20)
    results = []

    def go():
        results.append(put(n, blob)[0])

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == [200] * 7 + [201], results
    i = info(n)
    assert i["slices"] == 1 and i["used_bytes"] == len(blob)
    assert nu.stored_files(n.data) == {nu.address(blob): blob}
    assert os.listdir(n.data / "tmp") == []


def test_advertised_address(cluster):
    (n,) = cluster(1, extra=["--advertise", "localhost:7777"])
    assert info(n)["addr"] == "localhost:7777"
    st, body, _ = put(n, nu.random_blob(100))
    assert st == 201 and json.loads(body)["stored_on"] == ["localhost:7777"]
    assert [m["addr"] for m in n.get_json("/v1/members")] == ["localhost:7777"]
    p = harness.run(["node", "--data", n.data, "--listen", "127.0.0.1:1", "--advertise", "x"],
                    check=False, timeout=20)
    assert p.returncode == 2 and "--advertise" in p.stderr
