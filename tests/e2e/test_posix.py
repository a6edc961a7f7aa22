"""POSIX conformance of the mount (issue 4, item 3), with exact errnos.

Every test runs three times: against a plain directory on the local disk
(the reference: it proves the expectations are what Linux really does) and
inside a real meshfs mount on 3 real peers (volume with 64 KiB slices, so
slice boundaries are cheap to cross), once as mounted by default and once
with -o writeback_cache (the kernel buffers writes and handles O_APPEND and
mtime itself). The meshfs cases are skipped with the reason
when no working mount can be made (see posix_util.probe_mount);
MESHFS_REQUIRE_MOUNT=1 makes that a failure.
"""
import errno
import os
import random
import stat
import time

import pytest

from posix_util import (AT_SYMLINK_NOFOLLOW, RENAME_EXCHANGE, RENAME_NOREPLACE, SLICE_SIZE,
                        UTIME_NOW, UTIME_OMIT, drop_file_cache, expect_errno, fallocate,
                        getxattr_raw, listxattr_raw, make_target, meshfs_env,
                        meshfs_writeback_env, renameat2, run_as, utimensat)

assert meshfs_env and meshfs_writeback_env  # fixtures, used by name


@pytest.fixture(params=["plain", "meshfs", "meshfs-writeback"])
def target(request):
    return make_target(request, request.param)

NOBODY = 65534
S = SLICE_SIZE


def write_file(path, data, mode=0o644):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def pread_all(fd, size):
    out = b""
    while len(out) < size:
        b = os.pread(fd, size - len(out), len(out))
        if not b:
            break
        out += b
    return out


# --------------------------------------------------------------------------
# create / open / read / write

def test_create_write_read(target):
    p = target.path / "f"
    for size in (0, 1, 4095, 4096, 4097, S - 1, S, S + 1, 3 * S + 17, 1_000_000):
        data = os.urandom(size)
        write_file(p, data)
        assert os.stat(p).st_size == size
        assert read_file(p) == data, f"size {size}"
    st = os.stat(p)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o644
    assert st.st_nlink == 1 and st.st_uid == 0 and st.st_gid == 0


def test_open_errnos(target):
    d = target.path
    expect_errno(errno.ENOENT, os.open, d / "missing", os.O_RDONLY)
    expect_errno(errno.ENOENT, os.open, d / "nodir" / "x", os.O_RDONLY | os.O_CREAT, 0o644)
    os.mkdir(d / "sub")
    expect_errno(errno.EISDIR, os.open, d / "sub", os.O_WRONLY)
    write_file(d / "file", b"x")
    expect_errno(errno.ENOTDIR, os.open, d / "file" / "x", os.O_RDONLY)
    expect_errno(errno.ENOTDIR, os.open, d / "file", os.O_RDONLY | os.O_DIRECTORY)
    expect_errno(errno.ENOENT, os.stat, d / "missing")


def test_o_excl(target):
    p = target.path / "x"
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    expect_errno(errno.EEXIST, os.open, p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    # O_EXCL never follows a symlink, even a dangling one
    os.symlink("nowhere", target.path / "dangling")
    expect_errno(errno.EEXIST, os.open, target.path / "dangling",
                 os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    assert not os.path.exists(target.path / "nowhere")
    os.mkdir(target.path / "d")
    expect_errno(errno.EEXIST, os.open, target.path / "d", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600


def test_o_trunc(target):
    p = target.path / "t"
    write_file(p, os.urandom(3 * S + 5))
    fd = os.open(p, os.O_RDWR | os.O_TRUNC)
    assert os.fstat(fd).st_size == 0
    os.write(fd, b"abc")
    os.close(fd)
    assert read_file(p) == b"abc"
    # O_TRUNC on a read-only open of an empty name must not create it
    expect_errno(errno.ENOENT, os.open, target.path / "nope", os.O_RDONLY | os.O_TRUNC)


def test_o_append(target):
    p = target.path / "a"
    write_file(p, b"start-")
    fd1 = os.open(p, os.O_WRONLY | os.O_APPEND)
    fd2 = os.open(p, os.O_WRONLY | os.O_APPEND)
    expect = b"start-"
    for i in range(50):
        chunk = (b"%d-" % i) * (1 + i * 37)
        os.write(fd1 if i % 2 else fd2, chunk)
        expect += chunk
    # a pwrite-free lseek to 0 does not defeat O_APPEND
    os.lseek(fd1, 0, os.SEEK_SET)
    os.write(fd1, b"END")
    expect += b"END"
    os.close(fd1)
    os.close(fd2)
    assert read_file(p) == expect
    assert os.stat(p).st_size == len(expect)


def test_write_at_offsets_and_overwrite(target):
    p = target.path / "o"
    model = bytearray()
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        for off, n in ((0, 10), (S - 3, 6), (2 * S + 100, 5000), (5, S * 2), (7 * S, 1)):
            data = os.urandom(n)
            os.pwrite(fd, data, off)
            if len(model) < off + n:
                model.extend(b"\0" * (off + n - len(model)))
            model[off:off + n] = data
            assert os.fstat(fd).st_size == len(model)
        assert pread_all(fd, len(model) + 10) == bytes(model)
        # reading at and past EOF returns nothing
        assert os.pread(fd, 100, len(model)) == b""
        assert os.pread(fd, 100, len(model) + 12345) == b""
    finally:
        os.close(fd)
    assert read_file(p) == bytes(model)


# --------------------------------------------------------------------------
# truncate / ftruncate across slice boundaries

def test_truncate_across_slices(target):
    p = target.path / "tr"
    model = bytearray(os.urandom(5 * S + 1234))
    write_file(p, bytes(model))
    for new in (4 * S + 10, 3 * S, 3 * S - 1, S + 1, 7 * S + 3, 2 * S, 0, S // 2, 9 * S):
        os.truncate(p, new)
        if new < len(model):
            del model[new:]
        else:
            model.extend(b"\0" * (new - len(model)))
        assert os.stat(p).st_size == new
        assert read_file(p) == bytes(model), f"after truncate to {new}"
    # shrink then grow: the old bytes must not come back
    write_file(p, b"\xaa" * (2 * S))
    os.truncate(p, 10)
    os.truncate(p, 2 * S)
    assert read_file(p) == b"\xaa" * 10 + b"\0" * (2 * S - 10)


def test_ftruncate_open_file(target):
    p = target.path / "ftr"
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        data = os.urandom(3 * S)
        os.write(fd, data)
        os.ftruncate(fd, S + 7)
        assert os.fstat(fd).st_size == S + 7
        assert pread_all(fd, 4 * S) == data[:S + 7]
        os.ftruncate(fd, 4 * S)
        os.pwrite(fd, b"tail", 4 * S - 4)
        assert pread_all(fd, 5 * S) == data[:S + 7] + b"\0" * (3 * S - 11) + b"tail"
        os.fsync(fd)
    finally:
        os.close(fd)
    target.remount()
    assert read_file(p) == data[:S + 7] + b"\0" * (3 * S - 11) + b"tail"
    expect_errno(errno.EINVAL, os.truncate, p, -1)
    os.mkdir(target.path / "dd")
    expect_errno(errno.EISDIR, os.truncate, target.path / "dd", 0)
    fd = os.open(p, os.O_RDONLY)
    try:
        expect_errno(errno.EINVAL, os.ftruncate, fd, 0)  # not open for writing
    finally:
        os.close(fd)


def test_random_rw_against_model(target):
    """A fixed-seed random mix of pwrite/truncate/pread compared with a model."""
    rng = random.Random(4242)
    p = target.path / "rnd"
    model = bytearray()
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        for step in range(300):
            op = rng.random()
            if op < 0.6:
                off = rng.randrange(0, 8 * S)
                n = rng.choice([1, 17, 4096, S - 1, S, S + 3, rng.randrange(1, 3 * S)])
                data = rng.randbytes(n)
                os.pwrite(fd, data, off)
                if len(model) < off + n:
                    model.extend(b"\0" * (off + n - len(model)))
                model[off:off + n] = data
            elif op < 0.75:
                new = rng.randrange(0, 9 * S)
                os.ftruncate(fd, new)
                if new < len(model):
                    del model[new:]
                else:
                    model.extend(b"\0" * (new - len(model)))
            else:
                off = rng.randrange(0, 9 * S)
                n = rng.randrange(1, 2 * S)
                got = os.pread(fd, n, off)
                assert got == bytes(model[off:off + n]), f"step {step}: pread({n}, {off})"
            if step % 50 == 49:
                os.fsync(fd)
        assert os.fstat(fd).st_size == len(model)
    finally:
        os.close(fd)
    target.remount()
    assert read_file(p) == bytes(model)


# --------------------------------------------------------------------------
# unlink while open

def test_unlink_while_open(target):
    p = target.path / "u"
    data = os.urandom(3 * S + 99)
    write_file(p, data)
    fd = os.open(p, os.O_RDWR)
    fd2 = os.open(p, os.O_RDONLY)
    try:
        os.unlink(p)
        assert not os.path.lexists(p)
        assert os.listdir(target.path) == []  # no hidden leftovers visible
        expect_errno(errno.ENOENT, os.stat, p)
        assert os.fstat(fd).st_nlink == 0
        assert pread_all(fd, len(data)) == data
        os.pwrite(fd, b"more", len(data))
        os.close(fd)
        fd = -1
        assert pread_all(fd2, len(data) + 4) == data + b"more"
        # a new file of the same name is a different file
        write_file(p, b"new")
        assert read_file(p) == b"new"
        assert pread_all(fd2, len(data) + 4) == data + b"more"
    finally:
        if fd >= 0:
            os.close(fd)
        os.close(fd2)
    assert sorted(os.listdir(target.path)) == ["u"]


def test_file_created_after_an_unlink_is_new(target):
    """A file created right after the newest file was deleted has its own
    contents; in meshfs also its own inode number, for the whole life of the
    volume (Linux file systems may reuse a freed number with a new
    generation, as ext4 does; FUSE keeps no generation across lookups)."""
    seen = set()
    for i in range(8):
        filler = target.path / "filler"
        write_file(filler, bytes([0x41 + i]) * (2 * S + 7))
        assert read_file(filler)[:3] == bytes([0x41 + i]) * 3  # in the page cache
        gone = os.stat(filler).st_ino
        seen.add(gone)
        os.unlink(filler)
        after = target.path / f"after{i}"
        write_file(after, b"written after the unlink %d\n" % i)
        st = os.stat(after)
        if target.meshfs:
            assert st.st_ino not in seen
        seen.add(st.st_ino)
        assert read_file(after) == b"written after the unlink %d\n" % i
        os.unlink(after)
        d = target.path / f"d{i}"
        os.mkdir(d)
        if target.meshfs:
            assert os.stat(d).st_ino not in seen
        seen.add(os.stat(d).st_ino)
        os.rmdir(d)
    target.remount()
    last = target.path / "last"
    write_file(last, b"after the remount")
    if target.meshfs:
        assert os.stat(last).st_ino not in seen
    assert read_file(last) == b"after the remount"
    assert os.listdir(target.path) == ["last"]


# --------------------------------------------------------------------------
# directories

def test_mkdir_rmdir(target):
    d = target.path
    os.mkdir(d / "a", 0o750)
    st = os.stat(d / "a")
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o750
    assert st.st_nlink == 2
    expect_errno(errno.EEXIST, os.mkdir, d / "a")
    os.mkdir(d / "a" / "b")
    os.mkdir(d / "a" / "c")
    assert os.stat(d / "a").st_nlink == 4
    expect_errno(errno.ENOTEMPTY, os.rmdir, d / "a")
    write_file(d / "a" / "b" / "f", b"1")
    expect_errno(errno.ENOTEMPTY, os.rmdir, d / "a" / "b")
    expect_errno(errno.ENOTDIR, os.rmdir, d / "a" / "b" / "f")
    expect_errno(errno.ENOTDIR, os.mkdir, d / "a" / "b" / "f" / "x")
    expect_errno(errno.ENOENT, os.rmdir, d / "a" / "zz")
    expect_errno(errno.EISDIR, os.unlink, d / "a" / "c")
    expect_errno(errno.EINVAL, os.rmdir, str(d / "a" / "c") + "/.")
    expect_errno(errno.EEXIST, os.mkdir, d / "a" / "b" / "f")
    os.rmdir(d / "a" / "c")
    assert os.stat(d / "a").st_nlink == 3
    os.unlink(d / "a" / "b" / "f")
    os.rmdir(d / "a" / "b")
    os.rmdir(d / "a")
    assert os.listdir(d) == []


def test_readdir_many(target):
    d = target.path / "many"
    os.mkdir(d)
    names = {f"file-{i:05d}" for i in range(1500)}
    for n in names:
        write_file(d / n, n.encode())
    assert set(os.listdir(d)) == names
    with os.scandir(d) as it:
        entries = list(it)
    assert len(entries) == len(names)
    assert all(e.is_file() for e in entries)
    for n in list(names)[:50]:
        assert read_file(d / n) == n.encode()


# --------------------------------------------------------------------------
# rename

def test_rename_files_and_dirs(target):
    d = target.path
    write_file(d / "a", b"AAA")
    write_file(d / "b", b"BBB")
    ino_a = os.stat(d / "a").st_ino
    os.rename(d / "a", d / "b")  # over an existing file
    assert not os.path.exists(d / "a")
    assert read_file(d / "b") == b"AAA"
    assert os.stat(d / "b").st_ino == ino_a
    os.mkdir(d / "d1")
    os.mkdir(d / "d2")
    write_file(d / "d1" / "in", b"in")
    os.rename(d / "d1", d / "d2")  # over an empty directory
    assert read_file(d / "d2" / "in") == b"in"
    assert not os.path.exists(d / "d1")
    os.mkdir(d / "d3")
    expect_errno(errno.ENOTEMPTY, os.rename, d / "d3", d / "d2")
    expect_errno(errno.EISDIR, os.rename, d / "b", d / "d3")
    expect_errno(errno.ENOTDIR, os.rename, d / "d3", d / "b")
    os.mkdir(d / "d2" / "sub")
    expect_errno(errno.EINVAL, os.rename, d / "d2", d / "d2" / "sub" / "x")
    expect_errno(errno.EINVAL, os.rename, d / "d2", d / "d2" / "sub")
    expect_errno(errno.ENOENT, os.rename, d / "missing", d / "zz")
    # move a directory to another parent: link counts follow
    os.mkdir(d / "p")
    os.rename(d / "d2" / "sub", d / "p" / "sub")
    assert os.stat(d / "d2").st_nlink == 2
    assert os.stat(d / "p").st_nlink == 3
    # rename onto a hard link of itself: nothing happens
    os.link(d / "b", d / "b2")
    os.rename(d / "b", d / "b2")
    assert os.path.exists(d / "b") and os.path.exists(d / "b2")
    assert os.stat(d / "b").st_nlink == 2
    # renaming a file to itself
    os.rename(d / "b", d / "b")
    assert read_file(d / "b") == b"AAA"
    target.remount()
    assert sorted(os.listdir(d)) == ["b", "b2", "d2", "d3", "p"]
    assert read_file(d / "d2" / "in") == b"in"
    assert os.listdir(d / "p") == ["sub"]


def test_rename_noreplace_exchange(target):
    d = target.path
    write_file(d / "x", b"X")
    write_file(d / "y", b"Y")
    expect_errno(errno.EEXIST, renameat2, d / "x", d / "y", RENAME_NOREPLACE)
    assert read_file(d / "x") == b"X" and read_file(d / "y") == b"Y"
    renameat2(d / "x", d / "z", RENAME_NOREPLACE)
    assert read_file(d / "z") == b"X" and not os.path.exists(d / "x")
    ino_z, ino_y = os.stat(d / "z").st_ino, os.stat(d / "y").st_ino
    renameat2(d / "z", d / "y", RENAME_EXCHANGE)
    assert read_file(d / "z") == b"Y" and read_file(d / "y") == b"X"
    assert os.stat(d / "z").st_ino == ino_y and os.stat(d / "y").st_ino == ino_z
    expect_errno(errno.ENOENT, renameat2, d / "z", d / "missing", RENAME_EXCHANGE)
    expect_errno(errno.EINVAL, renameat2, d / "z", d / "y", RENAME_EXCHANGE | RENAME_NOREPLACE)
    # exchange a file and a non-empty directory, across parents
    os.mkdir(d / "dir")
    write_file(d / "dir" / "inner", b"I")
    os.mkdir(d / "other")
    renameat2(d / "z", d / "dir", RENAME_EXCHANGE)
    assert read_file(d / "z" / "inner") == b"I"
    assert read_file(d / "dir") == b"Y"
    target.remount()
    assert read_file(d / "z" / "inner") == b"I"
    assert read_file(d / "dir") == b"Y"
    assert read_file(d / "y") == b"X"


# --------------------------------------------------------------------------
# hard links

def test_hard_links(target):
    d = target.path
    write_file(d / "f", b"shared")
    os.link(d / "f", d / "g")
    os.mkdir(d / "sub")
    os.link(d / "f", d / "sub" / "h")
    for n in ("f", "g", "sub/h"):
        st = os.stat(d / n)
        assert st.st_nlink == 3, n
        assert st.st_ino == os.stat(d / "f").st_ino
    with open(d / "g", "ab") as f:
        f.write(b"+more")
    assert read_file(d / "sub" / "h") == b"shared+more"
    expect_errno(errno.EEXIST, os.link, d / "f", d / "g")
    expect_errno(errno.EPERM, os.link, d / "sub", d / "sublink")
    expect_errno(errno.ENOENT, os.link, d / "missing", d / "x")
    os.unlink(d / "f")
    assert os.stat(d / "g").st_nlink == 2
    ctime = os.stat(d / "g").st_ctime_ns
    target.remount()
    assert os.stat(d / "g").st_nlink == 2
    assert os.stat(d / "g").st_ino == os.stat(d / "sub" / "h").st_ino
    assert os.stat(d / "g").st_ctime_ns == ctime
    os.unlink(d / "sub" / "h")
    assert os.stat(d / "g").st_nlink == 1
    assert read_file(d / "g") == b"shared+more"


# --------------------------------------------------------------------------
# symlinks

def test_symlinks(target):
    d = target.path
    write_file(d / "real", b"R")
    os.symlink("real", d / "l")
    assert os.readlink(d / "l") == "real"
    assert read_file(d / "l") == b"R"
    st = os.lstat(d / "l")
    assert stat.S_ISLNK(st.st_mode) and st.st_size == 4
    os.symlink("does/not/exist", d / "dangling")
    assert os.path.lexists(d / "dangling") and not os.path.exists(d / "dangling")
    expect_errno(errno.ENOENT, os.stat, d / "dangling")
    expect_errno(errno.EEXIST, os.symlink, "x", d / "l")
    expect_errno(errno.EINVAL, os.readlink, d / "real")
    long_target = ("abcdefghi/" * 410)[:4095]
    os.symlink(long_target, d / "long")
    assert os.readlink(d / "long") == long_target
    assert os.lstat(d / "long").st_size == 4095
    expect_errno(errno.ENAMETOOLONG, os.symlink, long_target + "x", d / "toolong")
    assert not os.path.lexists(d / "toolong")
    odd = b"\x01\xff odd \n target"
    os.symlink(odd, os.fsencode(d / "odd"))
    assert os.readlink(os.fsencode(d / "odd")) == odd
    target.remount()
    assert os.readlink(d / "long") == long_target
    assert os.readlink(d / "dangling") == "does/not/exist"
    assert os.readlink(os.fsencode(d / "odd")) == odd


# --------------------------------------------------------------------------
# special files

def test_mknod_fifo_socket_device(target):
    d = target.path
    os.mkfifo(d / "fifo", 0o640)
    st = os.lstat(d / "fifo")
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640
    os.mknod(d / "sock", stat.S_IFSOCK | 0o600)
    assert stat.S_ISSOCK(os.lstat(d / "sock").st_mode)
    os.mknod(d / "chr", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    st = os.lstat(d / "chr")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    os.mknod(d / "blk", stat.S_IFBLK | 0o600, os.makedev(7, 200))
    assert os.lstat(d / "blk").st_rdev == os.makedev(7, 200)
    os.mknod(d / "plain", stat.S_IFREG | 0o600)
    assert stat.S_ISREG(os.lstat(d / "plain").st_mode) and os.lstat(d / "plain").st_size == 0
    expect_errno(errno.EEXIST, os.mkfifo, d / "fifo")
    # the fifo really works (the kernel implements it on top of the inode)
    pid = os.fork()
    if pid == 0:
        try:
            fdw = os.open(d / "fifo", os.O_WRONLY)
            os.write(fdw, b"through the fifo")
            os.close(fdw)
        finally:
            os._exit(0)
    fdr = os.open(d / "fifo", os.O_RDONLY)
    got = os.read(fdr, 100)
    os.close(fdr)
    os.waitpid(pid, 0)
    assert got == b"through the fifo"
    target.remount()
    assert stat.S_ISFIFO(os.lstat(d / "fifo").st_mode)
    assert stat.S_ISSOCK(os.lstat(d / "sock").st_mode)
    assert os.lstat(d / "blk").st_rdev == os.makedev(7, 200)


# --------------------------------------------------------------------------
# permissions, ownership, setuid/setgid rules

def test_chmod_chown(target):
    d = target.path
    p = d / "f"
    write_file(p, b"x")
    os.chmod(p, 0o4751)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o4751
    os.chown(p, 1234, 5678)
    st = os.stat(p)
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    # chown of a regular file clears setuid (even by root)
    assert stat.S_IMODE(st.st_mode) == 0o751
    os.chmod(p, 0o6755)
    os.chown(p, 1234, 5679)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o755  # group-exec: setgid cleared too
    os.chmod(p, 0o2644)
    os.chown(p, 1235, -1)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o2644  # setgid without group-exec stays
    os.chown(p, -1, -1)
    # chown of a directory keeps setgid
    os.mkdir(d / "dir")
    os.chmod(d / "dir", 0o2775)
    os.chown(d / "dir", 42, 42)
    assert stat.S_IMODE(os.stat(d / "dir").st_mode) == 0o2775
    # lchown changes the link, not the target
    os.symlink("f", d / "l")
    os.chown(d / "l", 77, 88, follow_symlinks=False)
    assert (os.lstat(d / "l").st_uid, os.lstat(d / "l").st_gid) == (77, 88)
    assert os.stat(p).st_uid == 1235
    ctime = os.stat(p).st_ctime_ns
    time.sleep(0.02)
    os.chmod(p, 0o600)
    assert os.stat(p).st_ctime_ns > ctime
    target.remount()
    st = os.stat(p)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1235, 5679, 0o600)


def test_permissions_enforced_for_non_root(target):
    d = target.path
    os.chmod(d, 0o755)
    write_file(d / "private", b"secret", mode=0o600)
    os.chmod(d / "private", 0o600)
    expect_errno(errno.EACCES, run_as, NOBODY, NOBODY,
                 lambda: os.open(d / "private", os.O_RDONLY) and None)
    expect_errno(errno.EACCES, run_as, NOBODY, NOBODY,
                 lambda: os.open(d / "newfile", os.O_WRONLY | os.O_CREAT, 0o644) and None)
    expect_errno(errno.EPERM, run_as, NOBODY, NOBODY, lambda: os.chmod(d / "private", 0o777))
    expect_errno(errno.EPERM, run_as, NOBODY, NOBODY, lambda: os.chown(d / "private", NOBODY, -1))
    os.mkdir(d / "open")
    os.chmod(d / "open", 0o777)
    run_as(NOBODY, NOBODY, lambda: write_file(d / "open" / "mine", b"hi"))
    st = os.stat(d / "open" / "mine")
    assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY)


def test_write_by_non_owner_clears_setuid(target):
    d = target.path
    os.chmod(d, 0o755)
    p = d / "suid"
    write_file(p, b"original")
    os.chmod(p, 0o6777)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o6777

    def append():
        fd = os.open(p, os.O_WRONLY | os.O_APPEND)
        os.write(fd, b"+nobody")
        os.close(fd)

    run_as(NOBODY, NOBODY, append)
    assert read_file(p) == b"original+nobody"
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o777
    # truncate by non-owner clears them as well
    os.chmod(p, 0o4777)
    run_as(NOBODY, NOBODY, lambda: os.truncate(p, 3))
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o777
    assert read_file(p) == b"ori"
    # chmod g+s by an owner outside the group: setgid silently dropped
    q = d / "nobodys"
    write_file(q, b"")
    os.chown(q, NOBODY, 0)
    run_as(NOBODY, NOBODY, lambda: os.chmod(q, 0o2755))
    assert stat.S_IMODE(os.stat(q).st_mode) == 0o755


def test_setgid_directory_inheritance(target):
    d = target.path / "sg"
    os.mkdir(d)
    os.chown(d, 0, 4321)
    os.chmod(d, 0o2775)
    write_file(d / "f", b"")
    os.mkdir(d / "sub")
    assert os.stat(d / "f").st_gid == 4321
    st = os.stat(d / "sub")
    assert st.st_gid == 4321 and st.st_mode & stat.S_ISGID


# --------------------------------------------------------------------------
# timestamps

def test_utimensat(target):
    d = target.path
    p = d / "t"
    write_file(p, b"x")
    os.utime(p, ns=(1_000_000_123_456_789, 1_500_000_987_654_321))
    st = os.stat(p)
    assert st.st_atime_ns == 1_000_000_123_456_789
    assert st.st_mtime_ns == 1_500_000_987_654_321
    utimensat(p, UTIME_OMIT, (1_600_000_000, 1))
    st = os.stat(p)
    assert st.st_atime_ns == 1_000_000_123_456_789 and st.st_mtime_ns == 1_600_000_000_000_000_001
    before = time.time_ns()
    utimensat(p, UTIME_NOW, UTIME_OMIT)
    st = os.stat(p)
    assert before - 2_000_000_000 <= st.st_atime_ns <= time.time_ns() + 2_000_000_000
    assert st.st_mtime_ns == 1_600_000_000_000_000_001
    utimensat(p, (5, 0), UTIME_NOW)
    st = os.stat(p)
    assert st.st_atime_ns == 5_000_000_000 and st.st_mtime_ns >= before - 2_000_000_000
    # AT_SYMLINK_NOFOLLOW: the link's times change, the target's do not
    os.symlink("t", d / "l")
    os.utime(p, ns=(7_000_000_000, 8_000_000_000))
    utimensat(d / "l", (100, 200), (300, 400), AT_SYMLINK_NOFOLLOW)
    assert os.lstat(d / "l").st_mtime_ns == 300_000_000_400
    assert os.lstat(d / "l").st_atime_ns == 100_000_000_200
    assert os.stat(p).st_mtime_ns == 8_000_000_000
    # ctime moves on every change and cannot be set
    c1 = os.stat(p).st_ctime_ns
    time.sleep(0.02)
    os.utime(p, ns=(1, 2))
    assert os.stat(p).st_ctime_ns > c1
    # a non-owner may set "now" only with write access, never explicit times
    os.chmod(p, 0o666)
    run_as(NOBODY, NOBODY, lambda: utimensat(p, UTIME_NOW, UTIME_NOW))
    expect_errno(errno.EPERM, run_as, NOBODY, NOBODY, lambda: utimensat(p, (1, 1), (1, 1)))
    os.utime(p, ns=(1_000_000_123_456_789, 1_500_000_987_654_321))
    target.remount()
    st = os.stat(p)
    assert st.st_atime_ns == 1_000_000_123_456_789 and st.st_mtime_ns == 1_500_000_987_654_321
    assert os.lstat(d / "l").st_mtime_ns == 300_000_000_400


def test_mtime_ctime_on_write_and_dir_change(target):
    d = target.path
    p = d / "m"
    write_file(p, b"1")
    os.utime(p, ns=(10**18, 10**18))
    dir_m = os.stat(d).st_mtime_ns
    time.sleep(0.02)
    with open(p, "ab") as f:
        f.write(b"2")
    st = os.stat(p)
    assert st.st_mtime_ns != 10**18, "write did not update mtime"
    assert st.st_ctime_ns >= dir_m
    time.sleep(0.02)
    write_file(d / "new", b"")
    assert os.stat(d).st_mtime_ns > dir_m


def test_relatime_atime(target):
    p = target.path / "atime"
    write_file(p, os.urandom(10000))
    now = time.time_ns()
    day = 86400 * 10**9
    # atime older than mtime -> a read updates it
    os.utime(p, ns=(now - 3 * day, now - 2 * day))
    drop_file_cache(p)
    read_file(p)
    assert os.stat(p).st_atime_ns > now - 60 * 10**9, "atime not updated though older than mtime"
    # a second read soon after: atime is newer than mtime and ctime -> no update
    a = os.stat(p).st_atime_ns
    time.sleep(0.05)
    drop_file_cache(p)
    read_file(p)
    assert os.stat(p).st_atime_ns == a, "relatime: atime updated though newer than m/ctime"
    # atime more than a day old -> updated even if newer than mtime
    os.utime(p, ns=(now - 2 * day, now - 3 * day))
    drop_file_cache(p)
    read_file(p)
    assert os.stat(p).st_atime_ns > now - 60 * 10**9


# --------------------------------------------------------------------------
# extended attributes and ACLs

def test_xattrs(target):
    d = target.path
    p = d / "x"
    write_file(p, b"")
    values = {
        "user.plain": b"hello",
        "user.binary": bytes(range(256)),
        "user.empty": b"",
        "trusted.t": b"trusted value",
        "security.s": b"sec",
        "user." + "n" * 200: b"long name",
        "user.big": os.urandom(1500),
    }
    for k, v in values.items():
        os.setxattr(p, k, v)
    for k, v in values.items():
        assert os.getxattr(p, k) == v, k
    assert set(values) <= set(os.listxattr(p))
    expect_errno(errno.EEXIST, os.setxattr, p, "user.plain", b"x", os.XATTR_CREATE)
    expect_errno(errno.ENODATA, os.setxattr, p, "user.nope", b"x", os.XATTR_REPLACE)
    os.setxattr(p, "user.plain", b"replaced", os.XATTR_REPLACE)
    os.setxattr(p, "user.created", b"c", os.XATTR_CREATE)
    assert os.getxattr(p, "user.plain") == b"replaced"
    expect_errno(errno.ENODATA, os.getxattr, p, "user.missing")
    expect_errno(errno.ENODATA, os.removexattr, p, "user.missing")
    # size query and a buffer that is too small
    n, _ = getxattr_raw(p, "user.binary", 0)
    assert n == 256
    expect_errno(errno.ERANGE, getxattr_raw, p, "user.binary", 10)
    n, v = getxattr_raw(p, "user.binary", 256)
    assert v == bytes(range(256))
    total = listxattr_raw(p, 0)
    assert total >= sum(len(k) + 1 for k in values)
    expect_errno(errno.ERANGE, listxattr_raw, p, 3)
    os.removexattr(p, "user.created")
    assert "user.created" not in os.listxattr(p)
    expect_errno(errno.ERANGE, os.setxattr, p, "user." + "n" * 260, b"v")
    # directories and symlinks (trusted.* on a symlink is allowed)
    os.mkdir(d / "dir")
    os.setxattr(d / "dir", "user.d", b"dirval")
    os.symlink("x", d / "l")
    os.setxattr(d / "l", "trusted.link", b"lv", follow_symlinks=False)
    assert os.getxattr(d / "l", "trusted.link", follow_symlinks=False) == b"lv"
    expect_errno(errno.ENODATA, os.getxattr, d / "x", "trusted.link")
    target.remount()
    for k, v in values.items():
        if k != "user.plain":
            assert os.getxattr(p, k) == v, k
    assert os.getxattr(p, "user.plain") == b"replaced"
    assert os.getxattr(d / "dir", "user.d") == b"dirval"
    assert os.getxattr(d / "l", "trusted.link", follow_symlinks=False) == b"lv"


def test_posix_acls(target):
    from posix_util import sh
    d = target.path
    p = d / "acl"
    write_file(p, b"")
    os.mkdir(d / "adir")
    sh(["setfacl", "-m", "u:1234:rw-,g:4321:r--,m::rw-", str(p)])
    sh(["setfacl", "-d", "-m", "u:1234:rwx", str(d / "adir")])
    acl = sh(["getfacl", "-cn", str(p)]).stdout
    assert "user:1234:rw-" in acl and "group:4321:r--" in acl and "mask::rw-" in acl
    raw = os.getxattr(p, "system.posix_acl_access")
    assert len(raw) > 4
    dacl = sh(["getfacl", "-cnd", str(d / "adir")]).stdout
    assert "user:1234:rwx" in dacl
    target.remount()
    assert os.getxattr(p, "system.posix_acl_access") == raw
    assert "user:1234:rw-" in sh(["getfacl", "-cn", str(p)]).stdout
    assert "user:1234:rwx" in sh(["getfacl", "-cnd", str(d / "adir")]).stdout
    sh(["setfacl", "-b", str(p)])
    acl = sh(["getfacl", "-cn", str(p)]).stdout
    assert "user:1234" not in acl and "mask::" not in acl, acl


def test_default_acl_inherited(target):
    """A directory's default ACL becomes the access ACL of files created in it
    (and the default ACL of subdirectories), as on every ACL-capable Linux fs;
    it replaces the umask; without one the umask applies."""
    from posix_util import sh
    d = target.path / "inherit"
    os.mkdir(d)
    sh(["setfacl", "-d", "-m", "u:1234:rwx,g::r-x,o::---", str(d)])
    write_file(d / "child", b"", 0o666)
    os.mkdir(d / "subdir")
    acl = sh(["getfacl", "-cn", str(d / "child")]).stdout
    assert "user:1234:rwx" in acl and "mask::rw-" in acl and "other::---" in acl, acl
    # Created with 0666: the ACL, not the umask, decides.
    assert stat.S_IMODE(os.stat(d / "child").st_mode) == 0o660
    assert "user:1234:rwx" in sh(["getfacl", "-cnd", str(d / "subdir")]).stdout
    assert "user:1234:rwx" in sh(["getfacl", "-cn", str(d / "subdir")]).stdout
    # Inherited again one level down.
    write_file(d / "subdir" / "grandchild", b"x")
    assert "user:1234:rwx" in sh(["getfacl", "-cn", str(d / "subdir" / "grandchild")]).stdout
    # Outside the ACL'd directory the umask applies as usual.
    old = os.umask(0o027)
    try:
        write_file(target.path / "masked", b"")
        os.mkdir(target.path / "masked_dir", 0o777)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(target.path / "masked").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(target.path / "masked_dir").st_mode) == 0o750


# --------------------------------------------------------------------------
# statfs, fsync, fsyncdir

def test_statfs(target):
    st = os.statvfs(target.path)
    assert st.f_bsize > 0 and st.f_frsize > 0
    assert st.f_blocks > 0
    assert st.f_blocks >= st.f_bfree >= st.f_bavail >= 0
    assert st.f_namemax == 255
    assert st.f_bavail * st.f_frsize > 10 * 2**20, "less than 10 MiB free reported"


def test_fsync_fsyncdir(target):
    d = target.path
    fd = os.open(d / "s", os.O_RDWR | os.O_CREAT, 0o644)
    data = os.urandom(2 * S + 1)
    os.write(fd, data)
    os.fsync(fd)
    os.fdatasync(fd)
    os.close(fd)
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    assert read_file(d / "s") == data


# --------------------------------------------------------------------------
# sparse files, SEEK_DATA / SEEK_HOLE, fallocate, > 4 GiB, st_blocks

def test_sparse_seek_data_hole(target):
    p = target.path / "sparse"
    size = 64 * S
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b"A" * 4096, 0)
        os.pwrite(fd, b"B" * 4096, 32 * S)
        os.ftruncate(fd, size)
        os.fsync(fd)
        assert os.lseek(fd, 0, os.SEEK_DATA) == 0
        h = os.lseek(fd, 0, os.SEEK_HOLE)
        assert 4096 <= h <= 32 * S - 4096, f"first hole at {h}"
        nd = os.lseek(fd, h, os.SEEK_DATA)
        assert h < nd <= 32 * S, f"data after hole at {nd}"
        assert os.pread(fd, 32 * S - h, h) == b"\0" * (32 * S - h)
        h2 = os.lseek(fd, 32 * S, os.SEEK_HOLE)
        assert 32 * S + 4096 <= h2 <= size
        expect_errno(errno.ENXIO, os.lseek, fd, 48 * S, os.SEEK_DATA)
        assert os.lseek(fd, size - 1, os.SEEK_HOLE) in (size - 1, size)
        expect_errno(errno.ENXIO, os.lseek, fd, size, os.SEEK_DATA)
        expect_errno(errno.ENXIO, os.lseek, fd, size + 10, os.SEEK_HOLE)
        st = os.fstat(fd)
        assert st.st_size == size
        assert 8192 <= st.st_blocks * 512 <= 8 * S, f"st_blocks {st.st_blocks} for 8 KiB of data"
    finally:
        os.close(fd)
    data = read_file(p)
    assert data[:4096] == b"A" * 4096 and data[32 * S:32 * S + 4096] == b"B" * 4096
    assert data.count(0) == size - 8192


def test_st_blocks(target):
    d = target.path
    write_file(d / "empty", b"")
    assert os.stat(d / "empty").st_blocks == 0
    write_file(d / "full", os.urandom(10 * S))
    os.sync()
    b = os.stat(d / "full").st_blocks * 512
    assert 10 * S <= b <= 10 * S + 4 * S, f"st_blocks*512 = {b} for {10 * S} bytes"
    assert os.stat(d / "full").st_blksize > 0


def test_fallocate_mode0(target):
    p = target.path / "fa"
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"head")
        fallocate(fd, 0, 0, 3 * S + 5)
        assert os.fstat(fd).st_size == 3 * S + 5
        assert pread_all(fd, 4 * S) == b"head" + b"\0" * (3 * S + 1)
        fallocate(fd, 0, 0, 10)  # inside the file: size unchanged
        assert os.fstat(fd).st_size == 3 * S + 5
        expect_errno(errno.EINVAL, fallocate, fd, 0, 0, 0)
        os.pwrite(fd, b"x", S)
        assert os.pread(fd, 2, S - 1) == b"\0x"
    finally:
        os.close(fd)
    fd = os.open(p, os.O_RDONLY)
    try:
        expect_errno(errno.EBADF, fallocate, fd, 0, 0, 100)
    finally:
        os.close(fd)


def test_file_larger_than_4gib(target):
    p = target.path / "huge"
    off = 5 * 2**30
    data = os.urandom(100_000)
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b"start", 0)
        os.pwrite(fd, data, off)
        os.fsync(fd)
        st = os.fstat(fd)
        assert st.st_size == off + len(data)
        assert st.st_blocks * 512 < 64 * 2**20, "a sparse 5 GiB file should not allocate GiBs"
        assert os.pread(fd, len(data), off) == data
        assert os.pread(fd, 10, 2**32) == b"\0" * 10
        assert os.pread(fd, 5, 0) == b"start"
        assert os.lseek(fd, 2**32, os.SEEK_DATA) >= 2**32
        os.ftruncate(fd, off + 10)
        assert os.pread(fd, 100, off) == data[:10]
    finally:
        os.close(fd)
    target.remount()
    fd = os.open(p, os.O_RDONLY)
    try:
        assert os.fstat(fd).st_size == off + 10
        assert os.pread(fd, 100, off) == data[:10]
    finally:
        os.close(fd)


# --------------------------------------------------------------------------
# names

def test_names_any_bytes(target):
    d = os.fsencode(target.path)
    every = bytes(b for b in range(1, 256) if b != ord("/"))
    names = [
        every,                                    # 254 bytes: all but NUL and '/'
        b"a" * 255,
        "ünïcødé 名前 🎉".encode(),
        b"with space", b" leading", b"trailing ", b"-dash", b"--", b"new\nline",
        b"\xff\xfe invalid utf8", b"tab\tname", b"*?[glob]", b".hidden", b"...",
        ("é" * 127).encode() + b"x",             # 255 bytes multibyte
    ]
    for n in names:
        assert len(n) <= 255
        p = os.path.join(d, n)
        write_file(p, n)
    assert set(os.listdir(d)) == set(names)
    for n in names:
        assert read_file(os.path.join(d, n)) == n
    os.mkdir(os.path.join(d, b"D" * 255))
    too_long = b"b" * 256
    expect_errno(errno.ENAMETOOLONG, os.open, os.path.join(d, too_long),
                 os.O_WRONLY | os.O_CREAT, 0o644)
    expect_errno(errno.ENAMETOOLONG, os.mkdir, os.path.join(d, too_long))
    expect_errno(errno.ENAMETOOLONG, os.symlink, b"x", os.path.join(d, too_long))
    expect_errno(errno.ENAMETOOLONG, os.rename, os.path.join(d, b"a" * 255),
                 os.path.join(d, too_long))
    expect_errno(errno.ENAMETOOLONG, os.link, os.path.join(d, b"a" * 255),
                 os.path.join(d, too_long))
    expect_errno(errno.ENAMETOOLONG, os.stat, os.path.join(d, too_long))
    expect_errno(errno.ENAMETOOLONG, os.mkfifo, os.path.join(d, too_long))
    assert too_long not in os.listdir(d)
    target.remount()
    assert set(os.listdir(d)) == set(names) | {b"D" * 255}
    assert read_file(os.path.join(d, every)) == every


def test_deep_directories(target):
    p = target.path
    for i in range(60):
        p = p / f"level{i:02d}"
        os.mkdir(p)
    write_file(p / "leaf", b"deep")
    assert read_file(p / "leaf") == b"deep"
    os.rename(target.path / "level00", target.path / "moved")
    assert sum(1 for _ in os.walk(target.path / "moved")) == 60
