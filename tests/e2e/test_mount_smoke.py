"""Smoke test of `meshfs mount`: a real FUSE mount on 3 real peers.

Files of several sizes are written and read back, survive `meshfs umount` +
remount (same inode numbers) and a kill -9 after fsync; a few errnos come
through the kernel; the command refuses a second mount, a bad option and a
missing mountpoint with a clear message and the contract's exit codes;
the close of a read-only handle sends no FLUSH request (kernel trace).
"""
import errno
import hashlib
import json
import os
import subprocess
import time

import pytest

import harness

SIZES = [0, 1, 4095, 4096, 4097, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 5 * (1 << 20) + 123]


def payload(size, seed):
    out = bytearray()
    block = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


def write_tree(root):
    expect = {}
    for i, size in enumerate(SIZES):
        data = payload(size, i)
        path = root / f"file-{size}"
        path.write_bytes(data)
        expect[path.name] = data
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "dir" / "sub" / "deep.txt").write_bytes(b"deep\n")
    expect["dir/sub/deep.txt"] = b"deep\n"
    return expect


def check_tree(root, expect, mount):
    for name, data in expect.items():
        got = (root / name).read_bytes()
        assert got == data, f"{name}: {len(got)} bytes read, {len(data)} written\n{mount.describe()}"
        assert os.stat(root / name).st_size == len(data)


def test_write_read_remount(mounted):
    m = mounted()
    expect = write_tree(m.mountpoint)
    check_tree(m.mountpoint, expect, m)
    inodes = {n: os.stat(m.mountpoint / n).st_ino for n in expect}

    ls = subprocess.run(["ls", "-l", str(m.mountpoint)], capture_output=True, text=True, check=True)
    assert f" {5 * (1 << 20) + 123} " in ls.stdout, ls.stdout
    assert "file-4097" in ls.stdout

    assert m.unmount() == 0, m.describe()
    assert not harness.is_mounted(m.mountpoint)
    m2 = mounted(nodes=m.nodes, volume=m.volume)
    check_tree(m2.mountpoint, expect, m2)
    assert {n: os.stat(m2.mountpoint / n).st_ino for n in expect} == inodes
    # The big file is stored as slices on the peers, the small ones inline.
    st = os.stat(m2.mountpoint / f"file-{5 * (1 << 20) + 123}")
    assert st.st_blocks * 512 >= st.st_size
    vfs = os.statvfs(m2.mountpoint)
    assert vfs.f_blocks > 0 and vfs.f_namemax == 255
    assert m2.unexpected_errors() == []


def test_errnos_through_the_kernel(mounted):
    m = mounted()
    root = m.mountpoint
    (root / "d" / "sub").mkdir(parents=True)
    (root / "d" / "f").write_bytes(b"x")

    def errno_of(fn):
        with pytest.raises(OSError) as e:
            fn()
        return e.value.errno

    assert errno_of(lambda: os.mkdir(root / "d")) == errno.EEXIST
    assert errno_of(lambda: os.rmdir(root / "d")) == errno.ENOTEMPTY
    assert errno_of(lambda: open(root / "missing")) == errno.ENOENT
    assert errno_of(lambda: os.rename(root / "d", root / "d" / "sub" / "x")) == errno.EINVAL
    assert errno_of(lambda: os.link(root / "d", root / "dlink")) == errno.EPERM
    assert errno_of(lambda: os.mkdir(root / ("n" * 256))) == errno.ENAMETOOLONG
    assert errno_of(lambda: os.getxattr(root / "d" / "f", "user.none")) == errno.ENODATA
    os.setxattr(root / "d" / "f", "user.k", b"v")
    assert errno_of(lambda: os.setxattr(root / "d" / "f", "user.k", b"w", os.XATTR_CREATE)) \
        == errno.EEXIST
    os.mkdir(root / ("n" * 255))

    # Unlink while open: the data stays readable until the last close.
    with open(root / "d" / "f", "rb") as f:
        os.unlink(root / "d" / "f")
        assert f.read() == b"x"
    assert not (root / "d" / "f").exists()


def test_fsync_survives_kill9(mounted):
    m = mounted()
    data = payload(3 * (1 << 20) + 7, 99)
    with open(m.mountpoint / "durable", "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    m.crash()
    m2 = mounted(nodes=m.nodes, volume=m.volume)
    assert (m2.mountpoint / "durable").read_bytes() == data


def test_refusals_and_exit_codes(mounted, tmp_path):
    m = mounted()
    env = {"MESHFS_PASSPHRASE": harness.PASSPHRASE}
    other = tmp_path / "other"
    other.mkdir()
    p = harness.run(["mount", m.volume, other], check=False, env=env, timeout=60)
    assert p.returncode == 1 and "already mounted" in p.stderr, p.stderr
    assert not harness.is_mounted(other)

    p = harness.run(["mount", m.volume, other, "-o", "bogus_option"], check=False, env=env)
    assert p.returncode == 2 and "bogus_option" in p.stderr, p.stderr

    p = harness.run(["mount", m.volume, tmp_path / "nope"], check=False, env=env)
    assert p.returncode == 1 and "not an existing directory" in p.stderr, p.stderr

    p = harness.run(["mount", "--help"], check=False)
    assert p.returncode == 0
    for opt in ("allow_other", "cache_size=", "durability=", "ro"):
        assert opt in p.stdout, p.stdout


def test_daemon_mode_and_read_only(mounted, tmp_path):
    """Without -f the command returns once mounted; ro refuses writes."""
    m = mounted()
    (m.mountpoint / "keep").write_bytes(b"kept")
    assert m.unmount() == 0
    env = {"MESHFS_PASSPHRASE": harness.PASSPHRASE}
    mp = tmp_path / "ro"
    mp.mkdir()
    p = harness.run(["mount", m.volume, mp, "-o", "ro"], check=False, env=env, timeout=60)
    try:
        assert p.returncode == 0, p.stderr
        assert harness.is_mounted(mp)
        assert (mp / "keep").read_bytes() == b"kept"
        with pytest.raises(OSError) as e:
            (mp / "new").write_bytes(b"x")
        assert e.value.errno == errno.EROFS
        u = harness.run(["umount", mp], check=False, timeout=120)
        assert u.returncode == 0, u.stderr
        assert not harness.is_mounted(mp)
    finally:
        harness.force_unmount(mp)


def drop_page_cache():
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def pushed_bytes(m):
    p = harness.run(["status", str(m.mountpoint), "--json"])
    return json.loads(p.stdout)["cache"]["pushed_to_page_cache_bytes"]


def test_random_reads_fill_the_page_cache_and_writers_win(mounted):
    """A short read of a stored slice hands the rest of the slice to the
    kernel's page cache; what the kernel then serves without asking is the
    file's contents, and a writer or a truncate is never overwritten by it."""
    m = mounted()
    size = 3 * (1 << 20) + 5000
    data = payload(size, 42)
    path = m.mountpoint / "big.bin"
    path.write_bytes(data)
    assert m.unmount() == 0, m.describe()
    drop_page_cache()
    m = mounted(nodes=m.nodes, volume=m.volume)
    path = m.mountpoint / "big.bin"
    offsets = [5 * 4096 + 17, (1 << 20) + 300 * 4096, 2 * (1 << 20) + 4096, size - 100]
    with open(path, "rb", buffering=0) as f:
        for off in offsets:
            assert os.pread(f.fileno(), 4096, off) == data[off:off + 4096], off
    # Three slices read in 4 KiB: the rest of each is pushed (less what the
    # kernel's own read-ahead asked for, which varies), from a thread of
    # its own: wait for it a little.
    deadline = time.monotonic() + 5
    while pushed_bytes(m) < (1 << 20) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pushed_bytes(m) >= (1 << 20), m.describe()
    # Every byte, served now mostly from the pushed pages.
    assert path.read_bytes() == data
    assert os.stat(path).st_size == size

    # A writer: the new bytes win over pages pushed before.
    with open(path, "r+b", buffering=0) as f:
        f.seek((1 << 20) + 8192)
        f.write(b"N" * 10000)
    data = data[:(1 << 20) + 8192] + b"N" * 10000 + data[(1 << 20) + 8192 + 10000:]
    with open(path, "rb", buffering=0) as f:
        for off in [0, (1 << 20), (1 << 20) + 8192, 2 * (1 << 20)]:
            assert os.pread(f.fileno(), 20000, off) == data[off:off + 20000], off

    # A truncate: no stale page brings the old length back.
    os.truncate(path, (1 << 20) + 10)
    with open(path, "rb", buffering=0) as f:
        assert os.pread(f.fileno(), 4096, 2 * (1 << 20)) == b""
    assert os.stat(path).st_size == (1 << 20) + 10
    assert path.read_bytes() == data[:(1 << 20) + 10]

    # And the same after a remount, from the peers' copies.
    assert m.unmount() == 0, m.describe()
    drop_page_cache()
    m = mounted(nodes=m.nodes, volume=m.volume)
    got = m.mountpoint / "big.bin"
    with open(got, "rb", buffering=0) as f:
        assert os.pread(f.fileno(), 100, 4096) == data[4096:4196]
    assert got.read_bytes() == data[:(1 << 20) + 10]
    assert m.unexpected_errors() == []


def test_readahead_is_raised_at_the_first_open(mounted):
    """The kernel caps a FUSE mount's read-ahead at 128 KiB; the mount raises
    it (readahead=SIZE, default 4M) once the kernel has taken INIT."""
    m = mounted(options=("readahead=2M",))
    (m.mountpoint / "f").write_bytes(b"x" * 10)
    dev = os.stat(m.mountpoint).st_dev
    knob = f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb"
    with open(knob) as f:
        assert int(f.read()) == 2048, m.describe()
    assert m.unexpected_errors() == []


def test_writers_and_truncates_racing_random_readers_lose_nothing(mounted):
    """Random readers keep pushing slices to the page cache while a writer
    rewrites and truncates the same file: what the writer did is what the
    file holds afterwards, through the page cache and after a remount."""
    import random
    import threading
    import time

    m = mounted()
    path = m.mountpoint / "race.bin"
    size = 4 * (1 << 20)
    model = bytearray(payload(size, 7))
    path.write_bytes(model)
    assert m.unmount() == 0, m.describe()
    drop_page_cache()
    m = mounted(nodes=m.nodes, volume=m.volume)
    path = m.mountpoint / "race.bin"
    stop = time.time() + 4
    errors = []

    def reader(seed):
        rnd = random.Random(seed)
        try:
            with open(path, "rb", buffering=0) as f:
                while time.time() < stop:
                    os.pread(f.fileno(), 4096, rnd.randrange(0, size, 4096))
        except OSError as e:
            errors.append(e)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    rnd = random.Random(99)
    rounds = 0
    while time.time() < stop:
        off = rnd.randrange(0, len(model) - 20000)
        chunk = bytes([rnd.randrange(256)]) * rnd.randrange(1, 20000)
        with open(path, "r+b", buffering=0) as f:
            f.seek(off)
            f.write(chunk)
        model[off:off + len(chunk)] = chunk
        if rounds % 5 == 4 and len(model) > size // 2 + 1:
            new = rnd.randrange(size // 2, len(model))
            os.truncate(path, new)
            del model[new:]
        rounds += 1
    for t in threads:
        t.join()
    assert errors == []
    assert rounds > 5
    assert os.stat(path).st_size == len(model)
    assert path.read_bytes() == bytes(model)
    assert m.unmount() == 0, m.describe()
    drop_page_cache()
    m = mounted(nodes=m.nodes, volume=m.volume)
    assert (m.mountpoint / "race.bin").read_bytes() == bytes(model)
    assert m.unexpected_errors() == []


TRACEFS = "/sys/kernel/tracing"


def fuse_requests(mountpoint, action):
    """The FUSE requests (opcode names) the kernel sends to the mount at
    `mountpoint` while `action()` runs, from the fuse_request_send trace
    event filtered on the mount's connection."""
    event = f"{TRACEFS}/events/fuse/fuse_request_send"
    if not os.path.exists(event):
        subprocess.run(["mount", "-t", "tracefs", "nodev", TRACEFS], capture_output=True)
    if not os.path.exists(event):
        pytest.skip("no tracefs fuse_request_send event on this kernel")
    dev = os.stat(mountpoint).st_dev
    conn = (os.major(dev) << 20) | os.minor(dev)  # the kernel's dev_t

    def put(name, value):
        with open(f"{TRACEFS}/{name}", "w") as f:
            f.write(value)

    with open(f"{TRACEFS}/tracing_on") as f:
        was_on = f.read().strip()
    put("events/fuse/fuse_request_send/filter", f"connection == {conn}")
    put("trace", "")
    put("events/fuse/fuse_request_send/enable", "1")
    put("tracing_on", "1")
    try:
        action()
    finally:
        put("tracing_on", was_on)
        put("events/fuse/fuse_request_send/enable", "0")
        put("events/fuse/fuse_request_send/filter", "0")
    with open(f"{TRACEFS}/trace") as f:
        text = f.read()
    return [line.split("(FUSE_")[1].split(")")[0]
            for line in text.splitlines() if "fuse_request_send" in line and "(FUSE_" in line]


def test_read_only_close_sends_no_flush(mounted):
    """A read-only handle has nothing to write back: its close costs no
    FLUSH round trip (FOPEN_NOFLUSH); a writer's close still flushes."""
    m = mounted()
    path = m.mountpoint / "f"
    path.write_bytes(b"contents\n")

    def opens():
        for _ in range(10):
            fd = os.open(path, os.O_RDONLY)
            assert os.read(fd, 100) == b"contents\n"
            os.close(fd)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        os.write(fd, b"more\n")
        os.close(fd)

    ops = fuse_requests(m.mountpoint, opens)
    assert ops.count("OPEN") == 11, ops
    assert ops.count("RELEASE") == 11, ops
    assert ops.count("FLUSH") == 1, ops
    assert path.read_bytes() == b"contents\nmore\n"
