"""pytest fixtures: `cluster` (real peers on loopback) and `volume_mount`.

Skips the mount tests when /dev/fuse is unusable (libfuse's rule)."""
import os

import pytest

import harness


def fuse_usable():
    return os.path.exists("/dev/fuse") and os.access("/dev/fuse", os.R_OK | os.W_OK)


@pytest.fixture
def cluster(tmp_path):
    """Factory: cluster(n) starts n nodes joined to the first; all stopped at teardown."""
    started = []

    def start(n=3, **kw):
        nodes = []
        for i in range(n):
            join = [nodes[0].addr] if nodes else []
            nodes.append(harness.Node(tmp_path, join=join, **kw))
            started.append(nodes[-1])
        return nodes

    start.started = started
    yield start
    errors = []
    for node in started:
        if node.alive():
            node.stop()
        errors += node.unexpected_errors()
    assert not errors, "error lines in node logs:\n" + "\n".join(errors)


@pytest.fixture
def mounted(tmp_path, cluster):
    """Factory: mounted(options=(), nodes=None) inits a volume on 3 peers and mounts it."""
    if not fuse_usable():
        pytest.skip("/dev/fuse is not usable")
    mounts = []

    def make(options=(), nodes=None, replicas=3, volume=None, init_extra=()):
        nodes = nodes or cluster(3)
        vol = volume or tmp_path / "vol"
        if not (vol / "config.toml").exists():
            harness.init_volume(vol, [n.addr for n in nodes], replicas=replicas, extra=init_extra)
        m = harness.Mount(vol, tmp_path / f"mnt{len(mounts)}", options=options,
                          env={"MESHFS_PASSPHRASE": harness.PASSPHRASE})
        m.nodes = nodes
        mounts.append(m)
        return m

    yield make
    for m in mounts:
        m.cleanup()
