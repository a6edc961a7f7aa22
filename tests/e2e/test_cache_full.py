"""Full cache disk (issue 4, item 5): the volume directory (metadata, cache
and upload queue) on a 64 MiB tmpfs mounted by the test; with the peers
stopped nothing can be evicted, so writing fills the disk. The write must fail
cleanly with ENOSPC (at write, fsync or close; never EIO, never a hang), and
everything fsync'd before is intact after a remount, and reaches the peers
once they are back. The meshfs case is skipped with the reason while no mount
can be made.
"""
import hashlib
import json
import os
import subprocess
import sys

import pytest

from posix_util import (MeshfsEnv, assert_all_on_peers, open_tmpdir, remove_tree_later,
                        require_mount, sh)

FILL_SCRIPT = r"""
import errno, json, os, sys
path, limit = sys.argv[1], int(sys.argv[2])
res = {"errno": None, "where": None, "written": 0}
try:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
except OSError as e:
    res.update(errno=e.errno, where="open"); print(json.dumps(res)); sys.exit(0)
try:
    while res["written"] < limit:
        # fresh random data: equal slices would be deduplicated
        res["written"] += os.write(fd, os.urandom(1 << 20))
        if res["written"] % (8 << 20) == 0:
            os.fsync(fd)
    os.fsync(fd)
    res["where"] = "none"
except OSError as e:
    res.update(errno=e.errno, where="write/fsync")
try:
    os.close(fd)
except OSError as e:
    if res["errno"] is None:
        res.update(errno=e.errno, where="close")
print(json.dumps(res))
"""


def write_fsync(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class FullCacheDisk:
    """A volume whose directory is on a 64 MiB tmpfs, mounted with
    durability=local, peers stopped, a few files fsync'd, then filled with
    random data until the client says ENOSPC."""

    def __init__(self):
        self.work = open_tmpdir("meshfs-cachefull-")
        self.small = self.work / "smalldisk"
        self.small.mkdir()
        sh(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0755", "tmpfs", str(self.small)])
        # another program's file on the same disk, deleted later to make room
        self.ballast = self.small / "ballast"
        self.ballast.write_bytes(b"\0" * (16 << 20))
        self.env = None
        try:
            self.env = MeshfsEnv(self.work, options=("durability=local",),
                                 volume_dir=self.small / "vol")
            m = self.env.mountpoint
            self.env.stop_nodes()
            self.env.allow_log(r"127\.0\.0\.1|[Nn]o space|ENOSPC|full")
            self.expect = {}
            for i, size in enumerate([100, 5000, 300_000, 4_000_000]):
                data = os.urandom(size)
                write_fsync(m / f"kept{i}", data)
                self.expect[f"kept{i}"] = hashlib.sha256(data).hexdigest()
            p = subprocess.run([sys.executable, "-c", FILL_SCRIPT, str(m / "filler"),
                                str(256 << 20)], capture_output=True, text=True, timeout=180)
            assert p.returncode == 0, p.stderr
            self.fill = json.loads(p.stdout)
        except BaseException:
            self.close()
            raise

    def check_kept(self):
        for name, d in self.expect.items():
            assert digest(self.env.mountpoint / name) == d, f"{name} changed on a full disk"

    def close(self):
        if self.env:
            self.env.close()
        sh(["umount", "-l", str(self.small)], check=False)
        remove_tree_later(self.work)


def test_cache_disk_full_enospc():
    require_mount()
    full = FullCacheDisk()
    try:
        env, m, res = full.env, full.env.mountpoint, full.fill
        assert res["errno"] == 28, f"expected ENOSPC filling a 64 MiB cache disk, got {res}"
        assert res["written"] < (256 << 20)
        # the mount still works: metadata, the kept files
        assert env.mount.alive(), "the client died on a full disk\n" + env.mount.describe()
        assert "filler" in os.listdir(m)
        full.check_kept()
        # the user frees some space on the disk and the peers come back: the
        # queue drains, uploaded slices become evictable
        full.ballast.unlink()
        env.restart_nodes()
        env.sync(timeout=120)
        os.unlink(m / "filler")
        write_fsync(m / "after", b"after the full disk")
        env.remount()
        full.check_kept()
        assert (m / "after").read_bytes() == b"after the full disk"
        assert_all_on_peers(env)
        env.unmount()
    finally:
        full.close()


def test_unlink_on_full_cache_disk_while_offline():
    """Deleting a file must work on a full cache disk, as on any full local
    file system, so that a user can make room while the peers are away
    (without freeing anything else on that disk first)."""
    require_mount()
    full = FullCacheDisk()
    try:
        assert full.fill["errno"] == 28, full.fill
        assert (full.small / "vol" / "metadata.db.reserve").exists()
        os.unlink(full.env.mountpoint / "filler")
        assert "filler" not in os.listdir(full.env.mountpoint)
        full.check_kept()
        # It gave back the metadata reserve to do so; the mount says why.
        assert not (full.small / "vol" / "metadata.db.reserve").exists()
    finally:
        full.close()
