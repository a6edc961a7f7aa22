"""Helpers for the POSIX, tool, crash, offline and cache-full suites.

* ``probe_mount()``: is there a meshfs that can really mount? It runs
  ``meshfs mount --help`` and a real mount attempt on 3 real peers (write,
  read back, unmount). The meshfs cases are skipped with the reason when it
  fails; ``MESHFS_REQUIRE_MOUNT=1`` turns that skip into a failure (for CI once
  the mount is expected to work).
* ``MeshfsEnv``: 3 peers + volume + mount that a module can share, with
  remount, cache clear, sync and log checks; all started processes are ended
  by PID at teardown (harness discipline).
* ``fs_target`` fixture factory: a parametrized target directory, either a
  plain directory on the local disk (the reference that validates the
  expected errnos) or a directory inside a shared meshfs mount.
* ctypes wrappers for calls Python's os module lacks: renameat2,
  utimensat with UTIME_NOW/UTIME_OMIT, fallocate, getxattr with a caller's
  buffer size (ERANGE).
"""
import ctypes
import ctypes.util
import errno
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

import harness

SLICE_SIZE = 64 * 1024

# --------------------------------------------------------------------------
# libc wrappers

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def _check(ret, what, path=None):
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}", path)
    return ret


def renameat2(old, new, flags=0):
    _libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                                ctypes.c_uint]
    return _check(_libc.renameat2(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new), flags),
                  "renameat2", old)


def utimensat(path, atime, mtime, flags=0):
    """atime/mtime: (sec, nsec) tuples or UTIME_NOW / UTIME_OMIT."""
    def ts(v):
        if v in (UTIME_NOW, UTIME_OMIT):
            return _Timespec(0, v)
        return _Timespec(v[0], v[1])

    arr = (_Timespec * 2)(ts(atime), ts(mtime))
    _libc.utimensat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(_Timespec),
                                ctypes.c_int]
    return _check(_libc.utimensat(AT_FDCWD, os.fsencode(path), arr, flags), "utimensat", path)


def fallocate(fd, mode, offset, length):
    _libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    return _check(_libc.fallocate(fd, mode, offset, length), "fallocate")


def getxattr_raw(path, name, size):
    """getxattr(2) with a buffer of exactly `size` bytes; returns (len, bytes)."""
    buf = ctypes.create_string_buffer(max(size, 1))
    _libc.getxattr.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
    _libc.getxattr.restype = ctypes.c_ssize_t
    n = _check(_libc.getxattr(os.fsencode(path), os.fsencode(name), buf if size else None, size),
               "getxattr", path)
    return n, buf.raw[:n] if size else b""


def listxattr_raw(path, size):
    buf = ctypes.create_string_buffer(max(size, 1))
    _libc.listxattr.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
    _libc.listxattr.restype = ctypes.c_ssize_t
    return _check(_libc.listxattr(os.fsencode(path), buf if size else None, size), "listxattr",
                  path)


def expect_errno(code, fn, *args, **kw):
    """Calls fn and asserts it fails with exactly errno `code`."""
    try:
        fn(*args, **kw)
    except OSError as e:
        assert e.errno == code, (f"{getattr(fn, '__name__', fn)}{args}: expected "
                                 f"{errno.errorcode[code]}, got {errno.errorcode.get(e.errno, e.errno)}"
                                 f" ({e})")
        return e
    raise AssertionError(f"{getattr(fn, '__name__', fn)}{args}: expected "
                         f"{errno.errorcode[code]}, but it succeeded")


def run_as(uid, gid, fn):
    """Runs fn() in a forked child with the given non-root uid/gid; returns fn's
    result (an int, a short string or None) or raises what the child raised as
    an AssertionError/OSError."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            res = {"ok": fn()}
        except OSError as e:
            res = {"errno": e.errno, "msg": str(e)}
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            res = {"error": repr(e)}
        os.write(w, json.dumps(res).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    res = json.loads(data or b'{"error": "child died"}')
    if "errno" in res:
        raise OSError(res["errno"], res["msg"])
    if "error" in res:
        raise AssertionError("child failed: " + res["error"])
    return res["ok"]


def drop_file_cache(path):
    """Drops the page cache of one file (fsync + POSIX_FADV_DONTNEED) so the
    next read really reaches the filesystem."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def drop_caches():
    """Drops the whole page, dentry and inode cache (root only)."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def sha256_file(path, bufsize=1 << 20):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(bufsize)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def sh(cmd, timeout=300, check=True, cwd=None, env=None, input=None):
    """Runs an external command (list), returns CompletedProcess (text)."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                       env=full_env, input=input)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {p.returncode}\n"
                             f"stdout: {p.stdout[-3000:]}\nstderr: {p.stderr[-3000:]}")
    return p


# --------------------------------------------------------------------------
# meshfs environment

def _fuse_usable():
    return os.path.exists("/dev/fuse") and os.access("/dev/fuse", os.R_OK | os.W_OK)


class MeshfsEnv:
    """3 real peers on loopback, one volume, one mount. Not thread-safe; one
    per test or per module. close() ends everything it started, by PID."""

    def __init__(self, workdir, slice_size="64K", options=(), replicas=3, volume_dir=None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.options = tuple(options)
        self.nodes = []
        self.mount = None
        self.old_mounts = []
        self.volume = Path(volume_dir) if volume_dir else self.workdir / "vol"
        self.mountpoint = self.workdir / "mnt"
        try:
            for i in range(3):
                join = [self.nodes[0].addr] if self.nodes else []
                self.nodes.append(harness.Node(self.workdir, join=join))
            extra = ["--slice-size", slice_size] if slice_size else []
            harness.init_volume(self.volume, [n.addr for n in self.nodes], replicas=replicas,
                                extra=extra)
            self.do_mount()
        except BaseException:
            self.close(check_logs=False)
            raise

    @property
    def env(self):
        return {"MESHFS_PASSPHRASE": harness.PASSPHRASE}

    def do_mount(self, options=None):
        opts = self.options if options is None else tuple(options)
        self.mount = harness.Mount(self.volume, self.mountpoint, options=opts, env=self.env)
        return self.mount

    def unmount(self, timeout=120):
        m = self.mount
        self.mount = None
        self.old_mounts.append(m)
        return m.unmount(timeout=timeout)

    def remount(self, options=None):
        self.unmount()
        return self.do_mount(options)

    def crash(self):
        """kill -9 the client and detach the dead mount."""
        m = self.mount
        self.mount = None
        self.old_mounts.append(m)
        m.crash()

    def meshfs(self, *args, check=True, timeout=120):
        return harness.run(list(args), check=check, env=self.env, timeout=timeout)

    def sync(self, timeout=180):
        return self.meshfs("sync", self.mountpoint if self.mount else self.volume,
                           "--timeout", str(timeout), timeout=timeout + 30)

    def cache_clear(self):
        return self.meshfs("cache", "clear", self.volume)

    def status_json(self):
        p = self.meshfs("status", self.mountpoint if self.mount else self.volume, "--json")
        return json.loads(p.stdout)

    def node_slices(self):
        """Set of slice addresses stored on each node (from its data dir)."""
        return [node_slice_files(n) for n in self.nodes]

    def stop_nodes(self):
        for n in self.nodes:
            if n.alive():
                n.stop()

    def restart_nodes(self):
        """Starts every stopped peer again on its port and data directory."""
        for i, n in enumerate(self.nodes):
            if not n.alive():
                others = [o.addr for o in self.nodes if o is not n]
                n.restart(join=others[:1])

    def unexpected_errors(self):
        bad = []
        for p in self.nodes + self.old_mounts + ([self.mount] if self.mount else []):
            bad += p.unexpected_errors()
        return bad

    def allow_log(self, pattern):
        for p in self.nodes + self.old_mounts + ([self.mount] if self.mount else []):
            p.allow_log(pattern)
        self._allowed = getattr(self, "_allowed", []) + [pattern]

    def close(self, check_logs=True):
        if self.mount:
            self.mount.cleanup()
            self.old_mounts.append(self.mount)
            self.mount = None
        for m in self.old_mounts:
            m.cleanup()
        for n in self.nodes:
            if n.alive():
                n.stop()
        if check_logs:
            for pat in getattr(self, "_allowed", []):
                for p in self.nodes + self.old_mounts:
                    p.allow_log(pat)
            errs = self.unexpected_errors()
            assert not errs, "error lines in meshfs logs:\n" + "\n".join(errs[:50])


def node_slice_files(node):
    """Names of the regular files under a node's data dir that look like slice
    addresses (64 hex digits)."""
    out = set()
    for root, _, files in os.walk(node.data):
        for f in files:
            if len(f) == 64 and all(c in "0123456789abcdef" for c in f):
                out.add(f)
    return out


_probe_result = None


def probe_mount():
    """(ok, reason): meshfs mount --help works and a real mount on 3 peers
    stores and returns a file. Cached per process."""
    global _probe_result
    if _probe_result is not None:
        return _probe_result
    _probe_result = _probe()
    return _probe_result


def _probe():
    if not _fuse_usable():
        return False, "/dev/fuse is not usable"
    try:
        harness.meshfs_bin()
    except RuntimeError as e:
        return False, str(e)
    p = harness.run(["mount", "--help"], check=False, timeout=20)
    if p.returncode != 0:
        return False, f"`meshfs mount --help` exited {p.returncode}: {(p.stderr or p.stdout)[-300:]}"
    work = Path(tempfile.mkdtemp(prefix="meshfs-probe-"))
    env = None
    try:
        env = MeshfsEnv(work)
        data = os.urandom(200_000)
        (env.mountpoint / "probe").write_bytes(data)
        if (env.mountpoint / "probe").read_bytes() != data:
            return False, "probe mount returned different data"
        env.unmount(timeout=60)
        return True, ""
    except BaseException as e:  # noqa: BLE001 - the reason is reported in the skip
        return False, f"probe mount failed: {str(e)[-1500:]}"
    finally:
        if env:
            env.close(check_logs=False)
        shutil.rmtree(work, ignore_errors=True)


def require_mount():
    ok, reason = probe_mount()
    if not ok:
        if os.environ.get("MESHFS_REQUIRE_MOUNT") == "1":
            pytest.fail("meshfs mount does not work: " + reason)
        pytest.skip("meshfs mount does not work yet: " + reason)


def remove_tree_later(path):
    """Removes a test's work directory in the background: deleting many files
    on a disk mounted with `discard` takes minutes and proves nothing. The rm
    runs detached and ends by itself."""
    path = Path(path)
    if not path.exists():
        return
    trash = path.with_name(path.name + ".trash")
    try:
        os.rename(path, trash)
    except OSError:
        trash = path
    subprocess.Popen(["rm", "-rf", str(trash)], stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)


def unique_dir(base):
    d = Path(base) / ("t-" + uuid.uuid4().hex[:10])
    d.mkdir()
    return d


def wait_for(pred, timeout, interval=0.1, what="condition"):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def assert_all_on_peers(env, min_slices=1):
    """Every slice is on all 3 peers: /v1/info slice counts equal and >=
    min_slices, and the slice files seen in the peers' data dirs are the same
    set on each (checked over HTTP with HEAD for the union)."""
    infos = [n.get_json("/v1/info") for n in env.nodes]
    counts = [int(i.get("slices", -1)) for i in infos]
    assert min(counts) >= min_slices, f"slices per peer {counts}, expected >= {min_slices}"
    assert len(set(counts)) == 1, f"slices per peer differ: {counts}"
    union = set().union(*env.node_slices())
    assert len(union) >= counts[0], (f"found {len(union)} slice files in the peers' data dirs, "
                                     f"/v1/info says {counts[0]}")
    for n in env.nodes:
        missing = []
        for addr in sorted(union):
            st, _, _ = harness.http("HEAD", f"{n.url}/v1/slices/{addr}")
            if st != 200:
                missing.append(addr)
        assert not missing, f"{n.addr} lacks {len(missing)} slices, e.g. {missing[:3]}"
    return counts[0]


class Target:
    """A test directory: kind "plain" (local disk) or "meshfs" (in a mount)."""

    def __init__(self, kind, path, env=None):
        self.kind = kind
        self.path = Path(path)
        self.env = env

    @property
    def meshfs(self):
        return self.kind == "meshfs"

    def remount(self):
        """meshfs: unmount + mount again (the path stays valid). plain: no-op."""
        if self.env:
            self.env.remount()


def open_tmpdir(prefix):
    """A new directory under /tmp whose path every user can traverse (the
    non-root cases run as nobody; pytest's own tmp dirs are 0700)."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(d, 0o755)
    return d


def module_env(prefix, options):
    """A MeshfsEnv in a new /tmp directory for a module-scoped fixture to
    yield; closed and removed when the fixture ends."""
    require_mount()
    work = open_tmpdir(prefix)
    env = MeshfsEnv(work, options=options)
    yield env
    env.close()
    remove_tree_later(work)


@pytest.fixture(scope="module")
def meshfs_env():
    """One 3-peer cluster + volume (64 KiB slices) + mount (allow_other, so the
    non-root cases reach it) for a whole module."""
    yield from module_env("meshfs-e2e-", ("allow_other",))


@pytest.fixture(scope="module")
def meshfs_writeback_env():
    """Like meshfs_env, mounted with -o writeback_cache (the kernel's write-back
    cache, off by default): the kernel then buffers writes, applies O_APPEND
    and keeps mtime itself."""
    yield from module_env("meshfs-e2e-wb-", ("allow_other", "writeback_cache"))


@pytest.fixture(params=["plain", "meshfs"])
def target(request):
    """A fresh empty directory on the plain local disk (the reference) or in
    the module's meshfs mount. Tests are written once and must pass on both."""
    return make_target(request, request.param)


def make_target(request, kind):
    """`kind`: "plain", "meshfs" or "meshfs-writeback" (see the fixtures)."""
    if kind == "plain":
        d = open_tmpdir("meshfs-plain-")
        request.addfinalizer(lambda: shutil.rmtree(d, ignore_errors=True))
        return Target("plain", d)
    env = request.getfixturevalue("meshfs_writeback_env" if kind == "meshfs-writeback"
                                  else "meshfs_env")
    if env.mount is None:
        env.do_mount()
    d = unique_dir(env.mountpoint)
    os.chmod(d, 0o755)
    return Target("meshfs", d, env)
