"""Real programs on the mount (issue 4, tests, second item): git, sqlite3,
fio with verification, tar. Each also after unmount + remount.

Every case runs against a plain directory (the reference) and inside a real
meshfs mount on 3 real peers; the meshfs cases are skipped with the reason
while no mount can be made.
"""
import json
import os
import subprocess

import pytest

from posix_util import (meshfs_env, open_tmpdir, remove_tree_later, sh, target)

assert meshfs_env and target  # fixtures, used by name

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org",
           "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent-home", "GIT_TERMINAL_PROMPT": "0"}
COMMITS = 300


@pytest.fixture(scope="module")
def source_repo():
    """A local repository with COMMITS commits over a few dozen files, made
    with git fast-import (fast, deterministic content)."""
    base = open_tmpdir("meshfs-git-src-")
    repo = base / "repo"
    sh(["git", "init", "-q", "-b", "main", str(repo)], env=GIT_ENV)
    lines = []
    for i in range(COMMITS):
        lines.append("commit refs/heads/main")
        lines.append(f"committer t <t@example.org> {1_600_000_000 + i * 60} +0000")
        msg = f"commit {i}\n"
        lines.append(f"data {len(msg)}\n{msg}")
        for j in range(3):
            path = f"dir{(i + j) % 7}/file{(i * 3 + j) % 40}.txt"
            content = (f"commit {i} file {j}\n" * (1 + (i * 13 + j) % 200)).encode()
            lines.append(f"M 100644 inline {path}")
            lines.append(f"data {len(content)}")
            lines.append(content.decode())
        lines.append("")
    stream = "\n".join(lines) + "\n"
    p = subprocess.run(["git", "fast-import", "--quiet"], input=stream.encode(), cwd=repo,
                       capture_output=True, timeout=120,
                       env={**os.environ, **GIT_ENV})
    assert p.returncode == 0, p.stderr.decode()
    sh(["git", "-C", str(repo), "reset", "-q", "--hard", "main"], env=GIT_ENV)
    yield repo
    remove_tree_later(base)


def git(*args, cwd=None, timeout=300):
    return sh(["git"] + list(args), cwd=cwd, env=GIT_ENV, timeout=timeout)


def test_git_clone_fsck(target, source_repo):
    clone = target.path / "clone"
    git("clone", "-q", "--no-local", str(source_repo), str(clone))
    git("fsck", "--full", "--strict", cwd=clone)
    assert int(git("rev-list", "--count", "HEAD", cwd=clone).stdout) == COMMITS
    assert git("status", "--porcelain", cwd=clone).stdout == ""
    # work in the clone: edit, commit, repack
    (clone / "new.txt").write_text("new file\n" * 1000)
    with open(clone / "dir0" / "file0.txt", "a") as f:
        f.write("changed\n")
    git("add", "-A", cwd=clone)
    git("commit", "-q", "-m", "change in the mount", cwd=clone)
    git("gc", "-q", "--aggressive", cwd=clone)
    head = git("rev-parse", "HEAD", cwd=clone).stdout.strip()
    target.remount()
    git("fsck", "--full", "--strict", cwd=clone)
    assert git("rev-parse", "HEAD", cwd=clone).stdout.strip() == head
    assert int(git("rev-list", "--count", "HEAD", cwd=clone).stdout) == COMMITS + 1
    assert git("status", "--porcelain", cwd=clone).stdout == ""
    # the clone's content equals the source at the same commit
    diff = sh(["git", "diff", "--stat", "HEAD~1", "--"], cwd=clone, env=GIT_ENV).stdout
    assert "new.txt" in diff


@pytest.mark.parametrize("journal,sync,n", [("wal", "NORMAL", 3000), ("delete", "FULL", 200)])
def test_sqlite_transactions(target, journal, sync, n):
    """n committed transactions: WAL with synchronous=NORMAL (fsync at
    checkpoints) and the rollback journal with every commit fsync'd."""
    db = target.path / f"t-{journal}.db"
    script = [f"PRAGMA journal_mode={journal};", f"PRAGMA synchronous={sync};",
              "CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT UNIQUE, v BLOB);"]
    for i in range(n):
        script.append(f"BEGIN; INSERT INTO t(k, v) VALUES('key{i}', randomblob({(i * 97) % 3000}));"
                      f" UPDATE t SET v = zeroblob(10) WHERE id = {i // 2 + 1} AND {i % 5} = 0;"
                      f" COMMIT;")
    script.append("DELETE FROM t WHERE id % 10 = 0;")
    script.append("PRAGMA integrity_check;")
    script.append("SELECT count(*) FROM t;")
    p = sh(["sqlite3", "-batch", str(db)], input="\n".join(script) + "\n", timeout=300)
    out = p.stdout.split()
    assert out[-2:] == ["ok", str(n - n // 10)], p.stdout[-500:]
    target.remount()
    p = sh(["sqlite3", "-batch", str(db)],
           input="PRAGMA integrity_check;\nSELECT count(*), sum(length(v)) FROM t;\n")
    ok, row = p.stdout.split()
    assert ok == "ok"
    assert int(row.split("|")[0]) == n - n // 10
    # a few more transactions after the remount
    sh(["sqlite3", "-batch", str(db)],
       input="".join(f"INSERT INTO t(k) VALUES('after{i}');\n" for i in range(100))
       + "PRAGMA integrity_check;\n")
    assert sh(["sqlite3", str(db), "SELECT count(*) FROM t WHERE k LIKE 'after%';"]
              ).stdout.strip() == "100"


def fio_job(path, extra=()):
    return ["fio", "--name=verify", f"--filename={path}", "--rw=randwrite", "--bs=4k",
            "--size=64M", "--ioengine=psync", "--verify=crc32c", "--verify_fatal=1",
            "--randseed=1234", "--output-format=json", "--verify_state_save=0"] + list(extra)


def test_fio_verify(target):
    f = target.path / "fio.dat"
    p = sh(fio_job(f, ["--end_fsync=1"]), timeout=240, check=False)
    assert p.returncode == 0, f"fio failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}"
    j = json.loads(p.stdout[p.stdout.index("{"):])
    job = j["jobs"][0]
    assert job["error"] == 0
    assert job["write"]["io_bytes"] >= 64 * 2**20
    assert job["read"]["io_bytes"] >= 64 * 2**20  # the verify pass read everything back
    target.remount()
    p = sh(fio_job(f, ["--verify_only"]), timeout=240, check=False)
    assert p.returncode == 0, f"fio verify after remount failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}"
    # the check can fail: damage one block and verify again
    with open(f, "r+b") as fh:
        fh.seek(4096 * 1000 + 100)
        fh.write(b"\xde\xad\xbe\xef")
    p = sh(fio_job(f, ["--verify_only"]), timeout=240, check=False)
    assert p.returncode != 0, "fio did not notice a damaged block"


@pytest.fixture(scope="module")
def archive():
    base = open_tmpdir("meshfs-tar-src-")
    tarball = base / "include.tar"
    sh(["tar", "-cf", str(tarball), "-C", "/usr", "include"], timeout=300)
    yield tarball
    remove_tree_later(base)


def test_tar_extract_compare(target, archive):
    out = target.path / "x"
    out.mkdir()
    sh(["tar", "-xf", str(archive), "-C", str(out)], timeout=600)
    p = sh(["tar", "-df", str(archive), "-C", str(out)], timeout=600, check=False)
    assert p.returncode == 0 and p.stdout == "", p.stdout[-2000:] + p.stderr[-2000:]
    target.remount()
    p = sh(["tar", "-df", str(archive), "-C", str(out)], timeout=600, check=False)
    assert p.returncode == 0 and p.stdout == "", p.stdout[-2000:] + p.stderr[-2000:]
    # the comparison can fail
    victim = out / "include" / "stdio.h"
    with open(victim, "r+b") as f:
        f.seek(10)
        f.write(b"#")
    p = sh(["tar", "-df", str(archive), "-C", str(out)], timeout=600, check=False)
    assert p.returncode != 0 and "stdio.h" in p.stdout + p.stderr
