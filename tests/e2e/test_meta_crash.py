"""kill -9 of the client after close(2), without fsync (docs/mount.md,
"Durability"): close returns with the metadata committed, also for a file
whose create was committed together with its contents at that close, and
for the chmod / utimes / rename that rsync makes after it. A file still open
at the kill may be lost (its create is committed with its first flush), but
nothing closed before is.
"""
import os
import stat

from posix_util import MeshfsEnv, open_tmpdir, remove_tree_later, require_mount


def test_kill9_after_close_keeps_closed_files_and_their_metadata():
    require_mount()
    work = open_tmpdir("meshfs-meta-crash-")
    env = MeshfsEnv(work, options=("durability=local",))
    try:
        root = env.mountpoint / "d"
        root.mkdir()
        expect = {}
        for i in range(200):  # small (inline) files: create + write + close
            data = os.urandom(i * 20)
            fd = os.open(root / f"f{i:03d}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            os.write(fd, data)
            os.close(fd)
            expect[f"f{i:03d}"] = data
        # rsync's way: temporary name, fchmod, write, close, utimes, chmod, rename
        for i in range(20):
            tmp = root / f".r{i}.XXXXXX"
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            os.fchmod(fd, 0o600)
            os.write(fd, b"rsync %d" % i)
            os.close(fd)
            os.utime(tmp, ns=(1_500_000_000_000_000_000, 1_600_000_000_000_000_000 + i))
            os.chmod(tmp, 0o644)
            os.rename(tmp, root / f"r{i}")
            expect[f"r{i}"] = b"rsync %d" % i
        # an empty file closed without a write: only the close commits it
        empty = os.open(root / "empty", os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(empty)
        expect["empty"] = b""
        # a file still open at the kill (its create may be lost: not checked)
        still_open = os.open(root / "open", os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(still_open, b"x")
        env.crash()
        try:
            os.close(still_open)
        except OSError:
            pass
        env.do_mount()
        names = set(os.listdir(root)) - {"open"}
        assert names == set(expect), sorted(names ^ set(expect))
        for name, data in expect.items():
            assert (root / name).read_bytes() == data, name
        assert stat.S_IMODE(os.stat(root / "f007").st_mode) == 0o640
        for i in range(20):
            st = os.stat(root / f"r{i}")
            assert stat.S_IMODE(st.st_mode) == 0o644
            assert st.st_mtime_ns == 1_600_000_000_000_000_000 + i
        env.unmount()
    finally:
        env.close()
        remove_tree_later(work)
