"""kill -9 of the client after fsync (issue 4, tests, third item; DESIGN.md
"Durability contract"): whatever fsync acknowledged survives, and the uploads
that were still queued finish after the remount (`meshfs sync` exits 0 and
every slice is on all 3 peers).

Two cases: peers up (the kill races the background uploads) and all peers
stopped while writing (with -o durability=local, so fsync is acknowledged
from the local queue and every upload is certainly still queued at the kill).
The meshfs cases are skipped with the reason while no mount can be made.
"""
import hashlib
import os

import pytest

from posix_util import (MeshfsEnv, assert_all_on_peers, open_tmpdir, remove_tree_later,
                        require_mount)


def write_fsync(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_files(root):
    """Writes and fsyncs a set of files; returns {relative path: sha256}."""
    sizes = [0, 1, 4095, 4096, 70_000, 64 * 1024 * 5 + 3, 3_000_000, 12_000_000]
    (root / "dir" / "sub").mkdir(parents=True)
    expect = {}
    for i, size in enumerate(sizes):
        rel = f"dir/sub/f{i}" if i % 2 else f"f{i}"
        data = os.urandom(size)
        write_fsync(root / rel, data)
        expect[rel] = hashlib.sha256(data).hexdigest()
    # a rename made durable with fsync of the directory
    os.rename(root / "f0", root / "dir" / "renamed")
    fsync_dir(root / "dir")
    fsync_dir(root)
    expect["dir/renamed"] = expect.pop("f0")
    # an overwrite in the middle of an existing file, fsync'd
    p = root / "f2"
    fd = os.open(p, os.O_RDWR)
    try:
        os.pwrite(fd, b"Z" * 100_000, 1_000_000)
        os.fsync(fd)
    finally:
        os.close(fd)
    with open(p, "rb") as f:
        expect["f2"] = hashlib.sha256(f.read()).hexdigest()
    return expect


def check_files(root, expect):
    for rel, digest in expect.items():
        with open(root / rel, "rb") as f:
            got = hashlib.sha256(f.read()).hexdigest()
        assert got == digest, f"{rel} differs after kill -9 and remount"


@pytest.mark.parametrize("peers", ["up", "down"])
def test_kill9_after_fsync(peers):
    require_mount()
    work = open_tmpdir("meshfs-crash-")
    env = MeshfsEnv(work, options=("durability=local",) if peers == "down" else ())
    try:
        if peers == "down":
            env.stop_nodes()
            env.allow_log(r"127\.0\.0\.1")  # the client logs that peers are unreachable
        expect = make_files(env.mountpoint)
        env.crash()  # kill -9 right after the last fsync
        if peers == "down":
            env.restart_nodes()
        env.do_mount()
        check_files(env.mountpoint, expect)
        env.sync(timeout=120)
        slices = assert_all_on_peers(env, min_slices=12_000_000 // (64 * 1024))
        st = env.status_json()
        assert st["uploads"]["pending_slices"] == 0, st
        # and the data comes back from the peers alone
        env.unmount()
        env.cache_clear()
        env.do_mount()
        check_files(env.mountpoint, expect)
        assert slices > 0
        env.unmount()
    finally:
        env.close()
        remove_tree_later(work)
