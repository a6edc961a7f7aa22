"""A scripted control-socket peer for testing the meshfs CLI's side of the
control protocol (docs/protocol.md, "Control socket") without FUSE: it listens
on VOLUME/control.sock, records every request and answers with what the test
scripted. The real daemon is exercised by test_volume_commands.py's mount tests.
"""
import json
import os
import socket
import threading
from pathlib import Path

CONFIG = """format_version = 1
volume_id = "{vid}"
peers = [{peers}]
replicas = 3
slice_size = 1048576
key_kind = "wrapped"
"""


def write_volume_dir(path, peers=("127.0.0.1:9",), vid="ab" * 32):
    """A volume directory with only config.toml (enough for the control commands)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.toml").write_text(
        CONFIG.format(vid=vid, peers=", ".join(f'"{p}"' for p in peers)))
    os.chmod(path / "config.toml", 0o600)
    return path


class FakeDaemon:
    """Serves VOLUME/control.sock. `replies[op]` is a list of lines (dicts or raw
    strings) sent in answer to a request, or a callable(request) -> list."""

    def __init__(self, volume, replies, mountpoint=None):
        self.volume = Path(volume)
        self.path = self.volume / "control.sock"
        self.replies = replies
        self.requests = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(self.path))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.stopping = False
        if mountpoint:
            (self.volume / "mount.json").write_text(
                json.dumps({"mountpoint": str(mountpoint), "pid": 0}))  # no process to wait for
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        with conn:
            buf = b""
            while not self.stopping:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    req = json.loads(line)
                    self.requests.append(req)
                    answer = self.replies.get(req.get("op"))
                    if callable(answer):
                        answer = answer(req)
                    if answer is None:
                        answer = [{"v": 1, "ok": False, "error": "unknown op", "code": "not supported"}]
                    for item in answer:
                        data = item if isinstance(item, str) else json.dumps(item)
                        conn.sendall(data.encode() + b"\n")

    def ops(self):
        return [r.get("op") for r in self.requests]

    def stop(self):
        self.stopping = True
        self.sock.close()
        self.thread.join(timeout=5)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        try:
            (self.volume / "mount.json").unlink()
        except FileNotFoundError:
            pass
