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
chunk = os.urandom(1 << 20)
try:
    while res["written"] < limit:
        res["written"] += os.write(fd, chunk)
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


def test_cache_disk_full_enospc():
    require_mount()
    work = open_tmpdir("meshfs-cachefull-")
    small = work / "smalldisk"
    small.mkdir()
    sh(["mount", "-t", "tmpfs", "-o", "size=64m,mode=0755", "tmpfs", str(small)])
    env = None
    try:
        env = MeshfsEnv(work, options=("durability=local",), volume_dir=small / "vol")
        m = env.mountpoint
        env.stop_nodes()
        env.allow_log(r"127\.0\.0\.1|[Nn]o space|ENOSPC|full")
        expect = {}
        for i, size in enumerate([100, 5000, 300_000, 4_000_000]):
            data = os.urandom(size)
            write_fsync(m / f"kept{i}", data)
            expect[f"kept{i}"] = hashlib.sha256(data).hexdigest()

        p = subprocess.run([sys.executable, "-c", FILL_SCRIPT, str(m / "filler"), str(256 << 20)],
                           capture_output=True, text=True, timeout=180)
        assert p.returncode == 0, p.stderr
        res = json.loads(p.stdout)
        assert res["errno"] == 28, f"expected ENOSPC filling a 64 MiB cache disk, got {res}"
        assert res["written"] < (256 << 20)
        # the mount still works: metadata reads, the kept files, removing the filler
        assert env.mount.alive(), "the client died on a full disk\n" + env.mount.describe()
        for name, d in expect.items():
            assert digest(m / name) == d
        os.unlink(m / "filler")
        # small writes work again once space is free
        write_fsync(m / "after", b"after the full disk")

        env.restart_nodes()
        env.sync(timeout=120)
        env.remount()
        for name, d in expect.items():
            assert digest(m / name) == d, f"{name} changed after a full cache disk"
        assert (m / "after").read_bytes() == b"after the full disk"
        assert_all_on_peers(env)
        env.unmount()
    finally:
        if env:
            env.close()
        sh(["umount", "-l", str(small)], check=False)
        remove_tree_later(work)
