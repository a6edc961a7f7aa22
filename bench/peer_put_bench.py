#!/usr/bin/env python3
"""CPU a storage peer spends per MiB stored through pipeline replication.

    bench/peer_put_bench.py [--meshfs-bin PATH] [--blobs 384] [--streams 4]

Starts 3 `meshfs node` peers on free loopback ports in a temporary
directory, PUTs --blobs fresh random 1 MiB slices to the first with
`X-Meshfs-Forward: second,third` from --streams keep-alive connections, and
prints the peers' CPU (user + system, from /proc/PID/stat) per MiB stored:
overall, and per peer (the first two forward, the last only stores). The
blobs are made and hashed before the clock starts; the client's own CPU is
not counted. Stops the peers it started (by PID) and removes the directory.
"""
import argparse
import hashlib
import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

TCK = os.sysconf("SC_CLK_TCK")


def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) / TCK, int(f[12]) / TCK


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"node on port {port} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"node on port {port} did not start")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--meshfs-bin", default=os.path.join(here, "..", "build", "release", "cli", "meshfs"))
    ap.add_argument("--blobs", type=int, default=384)
    ap.add_argument("--streams", type=int, default=4)
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="meshfs-peer-put-", dir="/var/tmp")
    procs = []
    try:
        ports = [free_port() for _ in range(3)]
        for i, port in enumerate(ports):
            cmd = [args.meshfs_bin, "node", "--data", f"{work}/n{i}", "--listen", f"127.0.0.1:{port}"]
            if i > 0:
                cmd += ["--join", f"127.0.0.1:{ports[0]}"]
            log = open(f"{work}/n{i}.log", "w")
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
            wait_listening(port, procs[-1])
        time.sleep(0.5)

        blobs = []
        for _ in range(args.blobs):
            b = os.urandom(1 << 20)
            blobs.append((hashlib.blake2b(b, digest_size=32).hexdigest(), b))
        owner = "ab" * 32
        forward = f"127.0.0.1:{ports[1]},127.0.0.1:{ports[2]}"
        errors = []

        def stream(k):
            c = http.client.HTTPConnection("127.0.0.1", ports[0], timeout=60)
            for i in range(k, len(blobs), args.streams):
                h, b = blobs[i]
                c.request("PUT", "/v1/slices/" + h, body=b,
                          headers={"X-Meshfs-Owner": owner, "X-Meshfs-Forward": forward,
                                   "Content-Type": "application/octet-stream"})
                r = c.getresponse()
                body = r.read()
                if r.status not in (200, 201) or str(ports[2]).encode() not in body:
                    errors.append(f"PUT {h[:12]}: HTTP {r.status} {body[:200]!r}")
                    return

        before = [cpu(p.pid) for p in procs]
        t0 = time.time()
        threads = [threading.Thread(target=stream, args=(k,)) for k in range(args.streams)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.time() - t0
        after = [cpu(p.pid) for p in procs]
        if errors:
            print("\n".join(errors[:5]), file=sys.stderr)
            return 1
        n = len(blobs)
        user = sum(a[0] - b[0] for a, b in zip(after, before))
        sys_ = sum(a[1] - b[1] for a, b in zip(after, before))
        per = [(a[0] - b[0] + a[1] - b[1]) / n * 1000 for a, b in zip(after, before)]
        print(f"{n} MiB stored on 3 peers in {wall:.2f} s; peers' CPU {user:.2f} s user + "
              f"{sys_:.2f} s system = {(user + sys_) / n / 3 * 1000:.2f} ms per MiB per peer "
              f"(first, second, last: {' '.join(f'{p:.2f}' for p in per)})")
        return 0
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
