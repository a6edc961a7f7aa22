"""Helpers for the storage-peer tests: blobs and their addresses, Ed25519
signing through libsodium (ctypes, so no extra Python package is needed),
root records and signed DELETE headers as docs/protocol.md defines them."""
import ctypes
import ctypes.util
import hashlib
import http.client
import os
import struct
import time

_sodium = ctypes.CDLL(ctypes.util.find_library("sodium") or "libsodium.so.23")
assert _sodium.sodium_init() >= 0


def address(blob):
    return hashlib.blake2b(blob, digest_size=32).hexdigest()


def random_blob(size):
    return os.urandom(size)


def keypair():
    pk = ctypes.create_string_buffer(32)
    sk = ctypes.create_string_buffer(64)
    assert _sodium.crypto_sign_keypair(pk, sk) == 0
    return pk.raw, sk.raw


def sign(sk, message):
    sig = ctypes.create_string_buffer(64)
    assert _sodium.crypto_sign_detached(sig, None, message, ctypes.c_ulonglong(len(message)),
                                        sk) == 0
    return sig.raw


def root_record(pk, sk, sequence, root=None, time_us=None):
    """The 149-byte MFSR v1 record, signed with sk."""
    root = root if root is not None else os.urandom(32)
    time_us = time_us if time_us is not None else int(time.time() * 1e6)
    body = b"MFSR" + bytes([1]) + pk + struct.pack(">Q", sequence) + root + struct.pack(">q", time_us)
    return body + sign(sk, body)


def delete_headers(pk, sk, addr, timestamp=None, nonce=None, method="DELETE"):
    owner = pk.hex()
    timestamp = int(time.time()) if timestamp is None else timestamp
    nonce = nonce or os.urandom(16).hex()
    msg = f"meshfs-request-v1\n{method}\n{addr}\n{owner}\n{timestamp}\n{nonce}".encode()
    return {"X-Meshfs-Owner": owner, "X-Meshfs-Timestamp": str(timestamp),
            "X-Meshfs-Nonce": nonce, "X-Meshfs-Signature": sign(sk, msg).hex()}


def raw_request(addr, method, path, body=b"", headers=None, timeout=10):
    """Sends the path exactly as given (no normalisation). Returns (status, body)."""
    host, port = addr.rsplit(":", 1)
    c = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        c.putrequest(method, path, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            c.putheader(k, v)
        if body or method in ("PUT", "POST"):
            c.putheader("Content-Length", str(len(body)))
        c.endheaders()
        if body:
            c.send(body)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def stored_files(data_dir):
    """{address: bytes} of every blob file under DIR/slices."""
    out = {}
    root = os.path.join(data_dir, "slices")
    for sub in os.listdir(root):
        for name in os.listdir(os.path.join(root, sub)):
            with open(os.path.join(root, sub, name), "rb") as f:
                out[name] = f.read()
    return out
