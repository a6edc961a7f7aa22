"""Process harness for the end-to-end tests: real `meshfs node` peers on
loopback and real FUSE mounts, with libfuse's test discipline:

* wait for readiness with a deadline and fail at once if the process died,
  showing its log;
* always clean up: unmount (fusermount3 -u -z) and kill the whole process
  group of everything started, by PID;
* daemon logs are scanned at teardown: a line with " error:" fails the test
  unless the test allowed it (``allow_log(pattern)``);
* every failure message includes a command line that reproduces the setup.
"""
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

SOURCE_DIR = Path(os.environ.get("MESHFS_SOURCE_DIR", Path(__file__).resolve().parents[2]))


def meshfs_bin():
    b = os.environ.get("MESHFS_BIN")
    if b:
        return b
    for cand in ("build/release/cli/meshfs", "build/cli/meshfs"):
        p = SOURCE_DIR / cand
        if p.exists():
            return str(p)
    raise RuntimeError("meshfs binary not found: build it or set MESHFS_BIN")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, headers=None, timeout=10):
    """Returns (status, body bytes, headers dict). Never raises on HTTP errors."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def run(args, check=True, env=None, input=None, timeout=120):
    """Runs `meshfs ARGS...`; returns CompletedProcess (text mode)."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    p = subprocess.run([meshfs_bin()] + [str(a) for a in args], capture_output=True, text=True,
                       env=full_env, input=input, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"meshfs {' '.join(map(str, args))} exited {p.returncode}\n"
                             f"stdout: {p.stdout}\nstderr: {p.stderr}")
    return p


class Process:
    """A started meshfs process in its own process group, logging to a file."""

    def __init__(self, args, log_path, env=None):
        self.args = [meshfs_bin()] + [str(a) for a in args]
        self.log_path = Path(log_path)
        self.allowed = []
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=full_env,
                                     start_new_session=True)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def describe(self):
        return f"command: {' '.join(self.args)}\nlog ({self.log_path}):\n{self.log_text()[-4000:]}"

    def signal(self, sig):
        if self.alive():
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout=10):
        """SIGTERM, wait, then SIGKILL. Returns the exit code."""
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.log.close()
        return self.proc.returncode

    def kill9(self):
        self.signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.log.close()

    def allow_log(self, pattern):
        self.allowed.append(re.compile(pattern))

    def unexpected_errors(self):
        bad = []
        for line in self.log_text().splitlines():
            if " error:" in line and not any(p.search(line) for p in self.allowed):
                bad.append(line)
        return bad


class Node(Process):
    """A `meshfs node` on 127.0.0.1."""

    def __init__(self, workdir, port=None, join=(), capacity=None, extra=()):
        self.port = port or free_port()
        self.addr = f"127.0.0.1:{self.port}"
        self.data = Path(workdir) / f"node-{self.port}"
        self.data.mkdir(parents=True, exist_ok=True)
        args = ["node", "--data", self.data, "--listen", self.addr]
        if join:
            args += ["--join", ",".join(join)]
        if capacity:
            args += ["--capacity", capacity]
        args += list(extra)
        super().__init__(args, Path(workdir) / f"node-{self.port}.log")
        self.url = f"http://{self.addr}"
        self.wait_ready()

    def restart(self, join=(), extra=()):
        """Starts a new process on the same port and data directory."""
        self.__init__(self.data.parent, port=self.port, join=join, extra=extra)

    def wait_ready(self, deadline=15):
        end = time.time() + deadline
        while time.time() < end:
            if not self.alive():
                raise AssertionError(f"node exited with {self.proc.returncode}\n{self.describe()}")
            try:
                status, _, _ = http("GET", self.url + "/v1/ping", timeout=1)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"node not ready after {deadline}s\n{self.describe()}")

    def get_json(self, path):
        status, body, _ = http("GET", self.url + path)
        assert status == 200, f"GET {path} -> {status}: {body[:200]!r}"
        return json.loads(body)


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def force_unmount(path):
    if is_mounted(path):
        subprocess.run(["fusermount3", "-u", "-z", str(path)], capture_output=True)


class Mount(Process):
    """`meshfs mount VOLUME MOUNTPOINT -f [-o OPTS]` in the background."""

    def __init__(self, volume, mountpoint, options=(), env=None, deadline=20):
        self.volume = Path(volume)
        self.mountpoint = Path(mountpoint)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        args = ["mount", self.volume, self.mountpoint, "-f"]
        if options:
            args += ["-o", ",".join(options)]
        super().__init__(args, Path(str(self.mountpoint) + ".log"), env=env)
        end = time.time() + deadline
        while time.time() < end:
            if not self.alive():
                raise AssertionError(f"mount exited with {self.proc.returncode}\n{self.describe()}")
            if is_mounted(self.mountpoint):
                return
            time.sleep(0.05)
        self.kill9()
        force_unmount(self.mountpoint)
        raise AssertionError(f"not mounted after {deadline}s\n{self.describe()}")

    def unmount(self, timeout=120):
        """`meshfs umount`, then wait for the daemon to exit. Returns its exit code."""
        p = run(["umount", self.mountpoint], check=False, timeout=timeout)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        if p.returncode != 0:
            raise AssertionError(f"meshfs umount failed: {p.stderr}\n{self.describe()}")
        self.log.close()
        return self.proc.returncode

    def crash(self):
        """kill -9 the client, then detach the dead mount."""
        self.kill9()
        force_unmount(self.mountpoint)

    def cleanup(self):
        if self.alive():
            self.signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        force_unmount(self.mountpoint)
        if not self.log.closed:
            self.log.close()


PASSPHRASE = "correct horse battery staple"


def init_volume(volume, peers, replicas=3, extra=()):
    """`meshfs init` with a passphrase from the environment (fast Argon2 in tests)."""
    return run(["init", volume, "--peers", ",".join(peers), "--replicas", replicas] + list(extra),
               env={"MESHFS_PASSPHRASE": PASSPHRASE, "MESHFS_KDF_COST": "min"})
