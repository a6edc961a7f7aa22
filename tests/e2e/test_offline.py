"""Offline behaviour (issue 4, item 7): with every peer stopped, cached data
stays readable, an uncached read fails fast with EIO, writes still succeed
(queued), `meshfs status` says offline with uploads pending; when the peers
come back the uploads resume and `meshfs sync` exits 0.
The meshfs case is skipped with the reason while no mount can be made.
"""
import errno
import os
import time

from posix_util import (MeshfsEnv, assert_all_on_peers, drop_file_cache, open_tmpdir,
                        remove_tree_later, require_mount)

EIO_DEADLINE_S = 10


def test_offline_read_write_resume():
    require_mount()
    work = open_tmpdir("meshfs-offline-")
    env = MeshfsEnv(work)
    try:
        m = env.mountpoint
        cached = os.urandom(3_000_000)
        uncached = os.urandom(2_000_000)
        (m / "cached").write_bytes(cached)
        (m / "uncached").write_bytes(uncached)
        env.sync()
        # drop everything local, then read one file back into the cache
        env.unmount()
        env.cache_clear()
        env.do_mount()
        assert (m / "cached").read_bytes() == cached
        env.stop_nodes()
        env.allow_log(r"127\.0\.0\.1")  # the client logs that peers are unreachable

        # cached data stays readable (page cache dropped: the read reaches the client)
        drop_file_cache(m / "cached")
        assert (m / "cached").read_bytes() == cached
        # metadata works as usual
        assert sorted(os.listdir(m)) == ["cached", "uncached"]
        assert os.stat(m / "uncached").st_size == len(uncached)

        # an uncached read fails fast with EIO
        t0 = time.monotonic()
        try:
            with open(m / "uncached", "rb") as f:
                f.read()
        except OSError as e:
            assert e.errno == errno.EIO, f"expected EIO, got {e}"
        else:
            raise AssertionError("reading an uncached file with all peers down succeeded")
        elapsed = time.monotonic() - t0
        assert elapsed < EIO_DEADLINE_S, f"uncached read took {elapsed:.1f}s to fail"

        # writes still succeed (queued locally)
        queued = os.urandom(1_500_000)
        (m / "queued").write_bytes(queued)
        os.mkdir(m / "newdir")
        (m / "newdir" / "small").write_bytes(b"small")
        st = env.status_json()
        assert st["offline"] is True, st
        assert st["peers"]["reachable"] == 0, st
        # flushes are asynchronous: wait until the written data is in the queue
        end = time.time() + 20
        while st["uploads"]["pending_slices"] == 0 and time.time() < end:
            time.sleep(0.2)
            st = env.status_json()
        assert st["uploads"]["pending_slices"] > 0, st
        # sync cannot finish while offline, and says so (exit 1 within its timeout)
        t0 = time.monotonic()
        p = env.meshfs("sync", m, "--timeout", "3", check=False, timeout=60)
        assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
        assert time.monotonic() - t0 < 30
        assert (m / "queued").read_bytes() == queued

        # peers come back: uploads resume
        env.restart_nodes()
        env.sync(timeout=120)
        st = env.status_json()
        assert st["uploads"]["pending_slices"] == 0, st
        assert st["offline"] is False, st
        assert (m / "uncached").read_bytes() == uncached
        assert_all_on_peers(env)
        env.unmount()
        env.cache_clear()
        env.do_mount()
        assert (m / "queued").read_bytes() == queued
        assert (m / "newdir" / "small").read_bytes() == b"small"
        env.unmount()
    finally:
        env.close()
        remove_tree_later(work)
