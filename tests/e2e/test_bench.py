"""bench/run itself (issue 5): a small subset against the plain directory,
with real peers and a real mount. Checks that it measures every system,
goes round the systems run by run, prints the ratio, and leaves no mount,
process or file behind."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import fuse_usable
import harness

BENCH = Path(__file__).resolve().parents[2] / "bench" / "run"


def mounts_under(path):
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(str(path))]


def test_bench_subset_round_robin_and_cleanup(tmp_path):
    if not fuse_usable() or os.geteuid() != 0:
        pytest.skip("bench/run needs root and /dev/fuse")
    work = tmp_path / "work"
    work.mkdir()
    p = subprocess.run(
        [sys.executable, str(BENCH), "--workloads", "c,g", "--refs", "plain", "--runs", "2",
         "--workdir", str(work), "--out", "-", "--meshfs-bin", harness.meshfs_bin()],
        capture_output=True, text=True, timeout=600)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-3000:]

    # Run 1 of every system before run 2 of any.
    order = re.findall(r"\] (meshfs|plain): run (\d)/2", out)
    assert order == [("meshfs", "1"), ("plain", "1"), ("meshfs", "2"), ("plain", "2")], order

    # One row per workload with a median and a range for both systems, and the ratio.
    assert "| workload | unit | meshfs | plain | meshfs/plain |" in out, out[-2000:]
    for desc in ("5,000 x 4 KiB creates", "rm -rf"):
        row = next((line for line in out.splitlines() if line.startswith(f"| {desc} |")), None)
        assert row is not None, f"no row for {desc}:\n{out[-2000:]}"
        cells = [c.strip() for c in row.strip("|").split("|")]
        for cell in cells[2:4]:
            assert re.fullmatch(r"[\d,.]+ \([\d,.]+–[\d,.]+\)", cell), row
        assert re.fullmatch(r"\d+\.\d\d×", cells[4]), row
    assert "peak RSS per workload" in out

    # Nothing left: no mount under the work directory, no file in it, and
    # no peer or mount process still running from it.
    assert mounts_under(work) == []
    assert list(work.iterdir()) == []
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(work) in cmd:
            left.append(cmd)
    assert left == []
