"""The command-line contract of init / key export / key passwd, and the
usage rules every subcommand follows (exit 0 ok, 1 failure, 2 usage)."""
import os
import stat
import struct

import pytest

import harness
from harness import run

PW = "correct horse battery staple"
FAST = {"MESHFS_KDF_COST": "min"}  # Argon2id at libsodium's MIN cost: fast, for tests
PEERS = "127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for var in ("MESHFS_PASSPHRASE", "MESHFS_NEW_PASSPHRASE", "MESHFS_KDF_COST"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def env(passphrase=PW, **extra):
    e = dict(FAST)
    if passphrase is not None:
        e["MESHFS_PASSPHRASE"] = passphrase
    e.update(extra)
    return e


def init(vol, *extra, passphrase=PW, check=True, **kw):
    return run(["init", vol, "--peers", PEERS] + list(extra), env=env(passphrase), check=check,
               input="", **kw)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def config_value(vol, key):
    for line in (vol / "config.toml").read_text().splitlines():
        if line.startswith(key + " = "):
            return line.split(" = ", 1)[1].strip('"')
    raise AssertionError(f"{key} not in config.toml")


def one_line_error(p, code=1):
    assert p.returncode == code, f"exit {p.returncode}, wanted {code}\n{p.stdout}\n{p.stderr}"
    assert p.stderr.startswith("meshfs: "), p.stderr
    return p.stderr


def test_init_creates_private_volume(tmp_path):
    vol = tmp_path / "vol"
    p = init(vol, "--replicas", "2", "--slice-size", "256K")
    assert "volume id" in p.stdout
    assert mode(vol) == 0o700
    assert mode(vol / "key") == 0o600
    assert mode(vol / "config.toml") == 0o600
    assert config_value(vol, "replicas") == "2"
    assert config_value(vol, "slice_size") == str(256 * 1024)
    assert config_value(vol, "key_kind") == "wrapped"
    assert len(config_value(vol, "volume_id")) == 64
    assert "127.0.0.1:7002" in (vol / "config.toml").read_text()
    # The master key is wrapped: the key file starts with its magic, kind 1.
    key = (vol / "key").read_bytes()
    assert key[:4] == b"MFSK" and key[5] == 1 and len(key) == 136


def test_init_by_name_resolves_under_xdg_config_home(tmp_path):
    init("photos")
    assert (tmp_path / "xdg" / "meshfs" / "photos" / "config.toml").exists()


def test_init_refuses_to_overwrite(tmp_path):
    vol = tmp_path / "vol"
    init(vol)
    before = {f: (vol / f).read_bytes() for f in ("key", "config.toml")}
    p = init(vol, passphrase="another", check=False)
    assert "already" in one_line_error(p, 1)
    assert {f: (vol / f).read_bytes() for f in ("key", "config.toml")} == before
    # A non-empty directory that is not a volume is not touched either.
    other = tmp_path / "other"
    other.mkdir()
    (other / "precious").write_text("keep")
    p = init(other, check=False)
    assert "not empty" in one_line_error(p, 1)
    assert (other / "precious").read_text() == "keep"
    assert not (other / "key").exists()


def test_wrong_passphrase_exits_1_saying_so(tmp_path):
    vol = tmp_path / "vol"
    init(vol)
    p = run(["key", "export", vol, tmp_path / "exp"], env=env("not the passphrase"), check=False)
    err = one_line_error(p, 1)
    assert "wrong passphrase" in err
    assert "decrypt" not in err.lower()
    assert not (tmp_path / "exp").exists()


def test_no_passphrase_and_no_terminal_is_a_clear_error(tmp_path):
    vol = tmp_path / "vol"
    p = init(vol, passphrase=None, check=False)  # stdin is a pipe, not a terminal
    err = one_line_error(p, 1)
    assert "MESHFS_PASSPHRASE" in err and "--passphrase-file" in err
    assert not vol.exists()


def test_passphrase_file(tmp_path):
    vol = tmp_path / "vol"
    pf = tmp_path / "pass"
    pf.write_text("from a file\n")  # the trailing newline is not part of it
    run(["init", vol, "--peers", PEERS, "--passphrase-file", pf], env=env(None), input="")
    run(["key", "export", vol, tmp_path / "e1"], env=env("from a file"))
    run(["key", "export", vol, tmp_path / "e2", "--passphrase-file", pf], env=env(None))
    p = run(["key", "export", vol, tmp_path / "e3", "--passphrase-file", tmp_path / "missing"],
            env=env(None), check=False)
    assert "passphrase file" in one_line_error(p, 1)


def test_damaged_key_file_says_damaged(tmp_path):
    vol = tmp_path / "vol"
    init(vol)
    key = bytearray((vol / "key").read_bytes())
    key[70] ^= 0x10
    (vol / "key").write_bytes(bytes(key))
    p = run(["key", "export", vol, tmp_path / "exp"], env=env(), check=False)
    err = one_line_error(p, 1)
    assert "key file is damaged" in err
    assert "wrong passphrase" not in err
    (vol / "key").write_bytes(b"")
    p = run(["key", "export", vol, tmp_path / "exp"], env=env(), check=False)
    assert "key file is damaged" in one_line_error(p, 1)


def test_key_passwd(tmp_path):
    vol = tmp_path / "vol"
    init(vol)
    volume_id = config_value(vol, "volume_id")
    run(["key", "passwd", vol], env=env(PW, MESHFS_NEW_PASSPHRASE="new one"))
    assert mode(vol / "key") == 0o600
    p = run(["key", "export", vol, tmp_path / "e1"], env=env(PW), check=False)
    assert "wrong passphrase" in one_line_error(p, 1)
    run(["key", "export", vol, tmp_path / "e2"], env=env("new one"))
    # Wrong old passphrase: nothing changes.
    key = (vol / "key").read_bytes()
    p = run(["key", "passwd", vol], env=env("nope", MESHFS_NEW_PASSPHRASE="x"), check=False)
    assert "wrong passphrase" in one_line_error(p, 1)
    assert (vol / "key").read_bytes() == key
    # No new passphrase and no terminal: refused, nothing changes.
    p = run(["key", "passwd", vol], env=env("new one"), check=False, input="")
    assert "MESHFS_NEW_PASSPHRASE" in one_line_error(p, 1)
    assert (vol / "key").read_bytes() == key
    # From files.
    (tmp_path / "old").write_text("new one\n")
    (tmp_path / "new").write_text("third\n")
    run(["key", "passwd", vol, "--passphrase-file", tmp_path / "old", "--new-passphrase-file",
         tmp_path / "new"], env=env(None))
    run(["key", "export", vol, tmp_path / "e3"], env=env("third"))
    assert config_value(vol, "volume_id") == volume_id


def test_export_then_import_reproduces_the_volume(tmp_path):
    vol = tmp_path / "vol"
    init(vol, "--replicas", "2", "--slice-size", "4M")
    exp = tmp_path / "exported"
    run(["key", "export", vol, exp], env=env())
    assert mode(exp) == 0o600
    text = exp.read_text()
    assert 'format = "meshfs-volume-export"' in text
    # Never overwrites an existing file.
    p = run(["key", "export", vol, exp], env=env(), check=False)
    assert "already exists" in one_line_error(p, 1)

    # "Another machine": another config home, the volume by name.
    other_xdg = tmp_path / "machine2"
    p = run(["init", "restored", "--import", exp], env=env(XDG_CONFIG_HOME=str(other_xdg)),
            input="")
    restored = other_xdg / "meshfs" / "restored"
    for key in ("volume_id", "replicas", "slice_size", "key_kind"):
        assert config_value(restored, key) == config_value(vol, key), key
    assert "127.0.0.1:7003" in (restored / "config.toml").read_text()
    assert mode(restored) == 0o700 and mode(restored / "key") == 0o600
    # The restored volume unlocks with the same passphrase.
    run(["key", "export", restored, tmp_path / "again"], env=env(XDG_CONFIG_HOME=str(other_xdg)))

    # The wrong passphrase for the export, a damaged export, a slice size change.
    p = run(["init", tmp_path / "r2", "--import", exp], env=env("wrong"), check=False, input="")
    assert "wrong passphrase" in one_line_error(p, 1)
    assert not (tmp_path / "r2").exists()
    bad = tmp_path / "bad-export"
    bad.write_text(text.replace("key = \"4d46534b", "key = \"4d46534c"))
    p = run(["init", tmp_path / "r3", "--import", bad], env=env(), check=False, input="")
    assert "damaged" in one_line_error(p, 1)
    p = run(["init", tmp_path / "r4", "--import", exp, "--slice-size", "1M"], env=env(),
            check=False, input="")
    assert "slice size" in one_line_error(p, 2)
    # Overriding the peers (another network view) keeps the volume id.
    run(["init", tmp_path / "r5", "--import", exp, "--peers", "10.0.0.1:9000"], env=env(),
        input="")
    assert config_value(tmp_path / "r5", "volume_id") == config_value(vol, "volume_id")
    assert "10.0.0.1:9000" in (tmp_path / "r5" / "config.toml").read_text()
    # Into an unattended volume: the export's passphrase from a file, the key stored raw.
    (tmp_path / "pf").write_text(PW + "\n")
    run(["init", tmp_path / "r6", "--import", exp, "--key-file", tmp_path / "r6.key",
         "--passphrase-file", tmp_path / "pf"], env=env(None), input="")
    assert config_value(tmp_path / "r6", "volume_id") == config_value(vol, "volume_id")
    assert config_value(tmp_path / "r6", "key_kind") == "raw"
    assert mode(tmp_path / "r6.key") == 0o600
    run(["key", "export", tmp_path / "r6", tmp_path / "r6.exp"], env=env(None), input="")


def test_key_file_volume(tmp_path):
    vol = tmp_path / "vol"
    kf = tmp_path / "keys" / "vol.key"
    kf.parent.mkdir()
    run(["init", vol, "--peers", PEERS, "--key-file", kf], env=env(None), input="")
    assert mode(kf) == 0o600
    assert not (vol / "key").exists()
    assert config_value(vol, "key_kind") == "raw"
    assert config_value(vol, "key_file") == str(kf)
    # Unattended: no passphrase anywhere.
    exp = tmp_path / "exp"
    run(["key", "export", vol, exp], env=env(None), input="")
    assert 'key_kind = "raw"' in exp.read_text()
    p = run(["key", "passwd", vol], env=env(None), check=False)
    assert "no passphrase" in one_line_error(p, 1)
    # Import of a raw export into a passphrase-wrapped volume keeps the id.
    run(["init", tmp_path / "wrapped", "--import", exp], env=env("pw2"), input="")
    assert config_value(tmp_path / "wrapped", "volume_id") == config_value(vol, "volume_id")
    assert config_value(tmp_path / "wrapped", "key_kind") == "wrapped"
    # An existing key file with a loose mode is refused, naming the fix.
    kf.chmod(0o644)
    p = run(["key", "export", vol, tmp_path / "exp2"], env=env(None), check=False)
    assert "chmod 600" in one_line_error(p, 1)
    p = run(["init", tmp_path / "v2", "--peers", PEERS, "--key-file", kf], env=env(None),
            check=False, input="")
    assert "chmod 600" in one_line_error(p, 1)
    # An existing private key file is reused: same key, same volume id.
    kf.chmod(0o600)
    run(["init", tmp_path / "v3", "--peers", PEERS, "--key-file", kf], env=env(None), input="")
    assert config_value(tmp_path / "v3", "volume_id") == config_value(vol, "volume_id")
    # --key-file and --passphrase-file exclude each other.
    p = run(["init", tmp_path / "v4", "--peers", PEERS, "--key-file", tmp_path / "k4",
             "--passphrase-file", tmp_path / "pf"], env=env(None), check=False)
    one_line_error(p, 2)


def test_default_kdf_cost(tmp_path):
    """Without MESHFS_KDF_COST the key is wrapped at libsodium's INTERACTIVE cost."""
    vol = tmp_path / "vol"
    run(["init", vol, "--peers", PEERS], env={"MESHFS_PASSPHRASE": PW}, input="")
    key = (vol / "key").read_bytes()
    opslimit, memlimit = struct.unpack_from("<QQ", key, 16)
    assert (opslimit, memlimit) == (2, 64 * 1024 * 1024)  # crypto_pwhash_*_INTERACTIVE
    p = run(["key", "export", vol, tmp_path / "e"], env={"MESHFS_PASSPHRASE": "wrong"},
            check=False)
    assert "wrong passphrase" in one_line_error(p, 1)
    run(["key", "export", vol, tmp_path / "e"], env={"MESHFS_PASSPHRASE": PW})


@pytest.mark.parametrize("args, needle", [
    (["frobnicate"], "unknown command 'frobnicate'"),
    (["--frobnicate"], "unknown option '--frobnicate'"),
    ([], "a command is required"),
    (["key"], "needs a subcommand"),
    (["key", "rotate", "v"], "unknown command 'key rotate'"),
    (["init", "v", "--peers", "h:1", "--frobnicate"], "--frobnicate"),
    (["init"], "VOLUME is required"),
    (["init", "v", "--peers", "h:1", "--replicas", "many"], "--replicas"),
    (["init", "v", "--peers", "h:1", "--slice-size", "3K"], "64K..16M"),
    (["init", "v", "--peers", "nocolon"], "not HOST:PORT"),
    (["init", "v"], "--peers is required"),
    (["key", "export", "v"], "FILE is required"),
])
def test_usage_errors_exit_2(tmp_path, args, needle):
    p = run(args, env=env(), check=False, input="")
    assert p.returncode == 2, f"{args}: exit {p.returncode}\n{p.stderr}"
    assert needle in p.stderr, p.stderr
    assert p.stderr.startswith("meshfs: "), p.stderr
    assert "--help" in p.stderr or "Usage" in p.stderr or "meshfs: init: " in p.stderr, p.stderr
    assert not (tmp_path / "v").exists()


def test_help_and_version():
    p = run(["--version"])
    assert p.stdout.startswith("meshfs ") and p.stdout.endswith("\n")
    p = run(["--help"])
    for name in ("init", "key", "mount", "umount", "sync", "status", "peers", "check", "gc",
                 "snapshots", "cache", "node", "demo"):
        assert name in p.stdout, name
    for sub in (["init"], ["key"], ["key", "export"], ["key", "passwd"], ["mount"], ["umount"],
                ["sync"], ["status"], ["peers"], ["check"], ["gc"], ["snapshots"], ["cache"],
                ["cache", "clear"], ["node"], ["demo"]):
        p = run(sub + ["--help"])
        assert "Usage: meshfs " + " ".join(sub) in p.stdout, (sub, p.stdout)


@pytest.mark.parametrize("args", [
    ["check", "{vol}"], ["gc", "{vol}"], ["snapshots", "{vol}"], ["status", "{vol}"],
    ["sync", "{vol}"], ["cache", "clear", "{vol}"],
])
def test_operational_failures_exit_1(tmp_path, args):
    """Reserved subcommands, implemented or not, fail with exit 1 and one
    line on stderr for a VOLUME that does not exist."""
    missing = tmp_path / "no-such-volume"
    p = run([a.format(vol=missing) for a in args], env=env(), check=False, input="", timeout=60)
    one_line_error(p, 1)


def _read_until(fd, needle, deadline=20):
    """Reads from `fd` until `needle` appears; returns everything read."""
    import select
    import time
    buf = b""
    end = time.time() + deadline
    while needle not in buf:
        left = end - time.time()
        assert left > 0, f"timed out waiting for {needle!r}; got {buf!r}"
        r, _, _ = select.select([fd], [], [], left)
        if r:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            buf += chunk
    return buf


def _run_on_terminal(args, answers, extra_env=None):
    """Runs meshfs with a pseudo-terminal as stdin, answering each prompt
    (seen on stderr) with the next of `answers`. Returns (returncode, stderr,
    what the terminal showed)."""
    import subprocess
    master, slave = os.openpty()
    e = dict(os.environ)
    e.update(FAST)
    e.update(extra_env or {})
    p = subprocess.Popen([harness.meshfs_bin()] + [str(a) for a in args], stdin=slave,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e)
    os.close(slave)
    err = b""
    shown = b""
    try:
        for answer in answers:
            err += _read_until(p.stderr.fileno(), b": ", 20)
            os.write(master, answer.encode() + b"\n")
        p.wait(timeout=60)
        err += p.stderr.read()
        import select
        while select.select([master], [], [], 0.2)[0]:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
        p.stdout.close()
        p.stderr.close()
    return p.returncode, err.decode(errors="replace"), shown


def test_passphrase_prompt_on_a_terminal(tmp_path):
    vol = tmp_path / "vol"
    rc, err, shown = _run_on_terminal(["init", vol, "--peers", PEERS], ["typed secret"] * 2)
    assert rc == 0, err
    assert "Passphrase for" in err and "again" in err
    assert b"typed secret" not in shown  # not echoed
    run(["key", "export", vol, tmp_path / "e"], env=env("typed secret"))
    # Unlocking asks once.
    rc, err, _ = _run_on_terminal(["key", "export", vol, tmp_path / "e2"], ["typed secret"])
    assert rc == 0, err
    assert (tmp_path / "e2").exists()
    # Two different answers at init: nothing is created.
    rc, err, _ = _run_on_terminal(["init", tmp_path / "v2", "--peers", PEERS], ["one", "two"])
    assert rc == 1 and "differ" in err, err
    assert not (tmp_path / "v2").exists()
    # passwd: the old one once, the new one twice.
    rc, err, _ = _run_on_terminal(["key", "passwd", vol], ["typed secret", "newer", "newer"])
    assert rc == 0, err
    run(["key", "export", vol, tmp_path / "e3"], env=env("newer"))
