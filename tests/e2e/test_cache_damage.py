"""Damaged cache rows under a real mount. A warm read leaves the check of a
cached blob to its AEAD tag instead of hashing it again; these tests prove
that a changed byte in the cache database still never reaches a reader: the
mount fetches a good copy from the peers, and with the peers gone the read
fails with EIO and the damaged row is kept until a good copy is reachable.
"""
import errno
import os
import sqlite3

import pytest

from posix_util import MeshfsEnv, drop_file_cache, open_tmpdir, remove_tree_later, require_mount


def damage_every_cached_blob(volume):
    """Flips one byte in the middle of every blob in the volume's cache
    database, keeping each blob's length (only the AEAD tag can notice).
    Returns the number of rows changed."""
    db = sqlite3.connect(volume / "cache.db")
    try:
        rows = db.execute("SELECT rowid, data FROM blob_data WHERE length(data) > 64").fetchall()
        for rowid, data in rows:
            b = bytearray(data)
            b[len(b) // 2] ^= 0x5A
            db.execute("UPDATE blob_data SET data = ? WHERE rowid = ?", (bytes(b), rowid))
        db.commit()
        return len(rows)
    finally:
        db.close()


@pytest.fixture
def env():
    require_mount()
    work = open_tmpdir("meshfs-cache-damage-")
    e = MeshfsEnv(work)
    e.allow_log(r"damaged|authentication failed|127\.0\.0\.1")
    yield e
    e.close()
    remove_tree_later(work)


def test_damaged_cached_blob_is_refetched_from_peers(env):
    data = os.urandom(1_000_000)
    (env.mountpoint / "f").write_bytes(data)
    env.sync()
    env.unmount()
    assert damage_every_cached_blob(env.volume) >= 15  # 1 MB in 64 KiB slices
    env.do_mount()
    assert (env.mountpoint / "f").read_bytes() == data
    st = env.status_json()
    assert st["cache"]["damaged"] >= 15, st
    log = env.mount.log_text()
    assert "is damaged (authentication failed)" in log, log[-2000:]

    # The good copies replaced the damaged rows: read again with the peers gone.
    env.unmount()
    env.stop_nodes()
    env.do_mount()
    assert (env.mountpoint / "f").read_bytes() == data


def test_damaged_cached_blob_without_peers_is_eio_and_kept(env):
    data = os.urandom(300_000)
    (env.mountpoint / "f").write_bytes(data)
    env.sync()
    env.unmount()
    assert damage_every_cached_blob(env.volume) >= 4
    env.stop_nodes()
    env.do_mount()
    with pytest.raises(OSError) as e:
        (env.mountpoint / "f").read_bytes()
    assert e.value.errno == errno.EIO
    # The peers come back: the same read now gets the good bytes.
    env.restart_nodes()
    drop_file_cache(env.mountpoint / "f")
    assert (env.mountpoint / "f").read_bytes() == data
