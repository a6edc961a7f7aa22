"""The kernel's cache of names and attributes stays right while it is long.

meshfs lets the kernel keep attributes, names and failed lookups for an hour
by default (attr_timeout / entry_timeout): the mount is the only writer of
its metadata and every change goes through the kernel, which updates or
drops what it caches. These tests make each kind of change right after the
kernel cached the old state (a failed lookup, a stat) and check that the
next lookup or stat sees the change at once. Like test_posix.py, every test
runs against a plain directory (the reference) and a real meshfs mount.
"""
import errno
import os
import stat
import time

from posix_util import meshfs_env, target

assert meshfs_env and target  # fixtures, used by name


def expect_missing(path):
    try:
        os.lstat(path)
    except OSError as e:
        assert e.errno == errno.ENOENT, e
        return
    raise AssertionError(f"{path} exists")


def test_failed_lookups_do_not_hide_new_names(target):
    d = target.path
    (d / "src").write_bytes(b"s")
    (d / "moved").write_bytes(b"m")
    makers = {
        "created": lambda p: os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)),
        "dir": lambda p: os.mkdir(p),
        "symlink": lambda p: os.symlink("src", p),
        "hardlink": lambda p: os.link(d / "src", p),
        "renamed": lambda p: os.rename(d / "moved", p),
        "fifo": lambda p: os.mkfifo(p),
    }
    for name in makers:
        expect_missing(d / name)  # the kernel may now cache the miss
        expect_missing(d / name)
    for name, make in makers.items():
        make(d / name)
    assert stat.S_ISREG(os.lstat(d / "created").st_mode)
    assert stat.S_ISDIR(os.lstat(d / "dir").st_mode)
    assert os.readlink(d / "symlink") == "src"
    assert os.lstat(d / "hardlink").st_ino == os.lstat(d / "src").st_ino
    assert (d / "renamed").read_bytes() == b"m"
    expect_missing(d / "moved")
    assert stat.S_ISFIFO(os.lstat(d / "fifo").st_mode)
    assert sorted(os.listdir(d)) == sorted(list(makers) + ["src"])
    # And the other way: a removed name is gone at once.
    os.unlink(d / "created")
    os.rmdir(d / "dir")
    expect_missing(d / "created")
    expect_missing(d / "dir")


def test_cached_attributes_follow_every_change(target):
    d = target.path
    f = d / "f"
    f.write_bytes(b"12345")
    st0 = os.stat(f)  # cached from here on
    time.sleep(0.01)
    os.chmod(f, 0o600)
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    os.chown(f, 1234, 5678)
    st = os.stat(f)
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    assert st.st_ctime_ns > st0.st_ctime_ns
    os.link(f, d / "g")
    assert os.stat(f).st_nlink == 2
    os.unlink(d / "g")
    assert os.stat(f).st_nlink == 1
    os.truncate(f, 2)
    assert os.stat(f).st_size == 2
    with open(f, "ab") as w:
        w.write(b"x" * 70000)
    st = os.stat(f)
    assert st.st_size == 70002
    assert st.st_blocks * 512 >= 65536
    os.utime(f, ns=(1_000_000_000, 2_000_000_000))
    assert os.stat(f).st_mtime_ns == 2_000_000_000
    before = os.stat(f).st_ctime_ns
    time.sleep(0.01)
    os.rename(f, d / "h")
    assert os.stat(d / "h").st_ctime_ns > before
    # a directory's link count and times
    dn = os.stat(d).st_nlink
    dm = os.stat(d).st_mtime_ns
    time.sleep(0.01)
    os.mkdir(d / "sub")
    assert os.stat(d).st_nlink == dn + 1
    assert os.stat(d).st_mtime_ns > dm
    os.rmdir(d / "sub")
    assert os.stat(d).st_nlink == dn
    # a file replaced by a rename: the old inode's link count drops
    (d / "a").write_bytes(b"a")
    (d / "b").write_bytes(b"b")
    fd = os.open(d / "b", os.O_RDONLY)
    try:
        assert os.fstat(fd).st_nlink == 1
        os.rename(d / "a", d / "b")
        assert os.fstat(fd).st_nlink == 0
        assert (d / "b").read_bytes() == b"a"
    finally:
        os.close(fd)


def test_symlink_targets_follow_a_replaced_link(target):
    d = target.path
    os.symlink("first-target", d / "l")
    assert os.readlink(d / "l") == "first-target"
    assert os.readlink(d / "l") == "first-target"  # may come from the kernel's cache
    os.symlink("second-target", d / "l2")
    os.rename(d / "l2", d / "l")
    assert os.readlink(d / "l") == "second-target"
    os.unlink(d / "l")
    os.symlink("third-target" * 20, d / "l")
    assert os.readlink(d / "l") == "third-target" * 20


def test_cached_listings_follow_every_change(target):
    """The kernel opens directories by itself and may keep their listings
    (no opendir reaches meshfs): a listing taken right after each kind of
    change, also through a directory handle opened before it, shows it."""
    d = target.path
    other = d / "other"
    other.mkdir()
    (other / "incoming").write_bytes(b"i")
    (d / "keep").write_bytes(b"k")
    expected = {"other", "keep"}

    def listed():
        return set(os.listdir(d))

    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        changes = [
            (lambda: (d / "new").write_bytes(b"n"), {"new"}, set()),
            (lambda: os.mkdir(d / "sub"), {"sub"}, set()),
            (lambda: os.symlink("keep", d / "link"), {"link"}, set()),
            (lambda: os.link(d / "keep", d / "hard"), {"hard"}, set()),
            (lambda: os.rename(d / "new", d / "renamed"), {"renamed"}, {"new"}),
            (lambda: os.rename(other / "incoming", d / "incoming"), {"incoming"}, set()),
            (lambda: os.rename(d / "renamed", other / "renamed"), set(), {"renamed"}),
            (lambda: os.unlink(d / "hard"), set(), {"hard"}),
            (lambda: os.rmdir(d / "sub"), set(), {"sub"}),
        ]
        for change, added, removed in changes:
            assert listed() == expected  # the kernel may cache this listing
            change()
            expected = (expected | added) - removed
            assert listed() == expected, (added, removed)
            os.lseek(fd, 0, os.SEEK_SET)  # rewinddir on the old handle
            assert set(os.listdir(fd)) == expected
        assert sorted(os.listdir(other)) == ["renamed"]
    finally:
        os.close(fd)
