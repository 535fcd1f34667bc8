"""data_root: where it defaults to, and the refusal of one that would vanish with its container."""

from __future__ import annotations

from pathlib import Path

import pytest

import tuneflow.storage as storage
from tuneflow.config import RetrainConfig
from tuneflow.runs.folders import open_run_dir
from tuneflow.storage import (
    EphemeralDataRootError,
    Mount,
    default_data_root,
    ephemeral_data_root_problem,
    mount_holding,
    parse_mountinfo,
)

# /proc/self/mountinfo of a `docker run -v /srv/tuneflow:/data` container (trimmed), the kernel's own format.
DOCKER_MOUNTINFO = """\
612 530 0:52 / / rw,relatime master:312 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/A:/var/lib/docker/overlay2/l/B,upperdir=/var/lib/docker/overlay2/x/diff
613 612 0:55 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
620 612 0:57 / /dev/shm rw,nosuid,nodev,noexec,relatime - tmpfs shm rw,size=65536k
624 612 253:1 /srv/tuneflow /data rw,relatime - ext4 /dev/mapper/root rw
625 612 253:1 /srv/my\\040photos /mnt/my\\040photos rw,relatime - ext4 /dev/mapper/root rw
"""


def test_mountinfo_is_parsed_with_escaped_spaces():
    mounts = parse_mountinfo(DOCKER_MOUNTINFO)
    assert Mount(Path("/"), "overlay") in mounts
    assert Mount(Path("/mnt/my photos"), "ext4") in mounts
    assert mount_holding(Path("/data/runs/x"), mounts) == Mount(Path("/data"), "ext4")
    assert mount_holding(Path("/app/data"), mounts) == Mount(Path("/"), "overlay")
    assert mount_holding(Path("/database"), mounts) == Mount(Path("/"), "overlay")  # /data is no prefix of it


def test_a_data_root_in_the_containers_own_filesystem_is_refused_with_the_fix():
    mounts = parse_mountinfo(DOCKER_MOUNTINFO)
    problem = ephemeral_data_root_problem(Path("/app/data"), "docker", mounts)
    assert problem is not None
    assert "'/app/data'" in problem and "container's own filesystem" in problem
    assert "-v /srv/tuneflow:/data -e TUNEFLOW_DATA_ROOT=/data" in problem
    assert "PersistentVolumeClaim" in problem and "allow_ephemeral_data_root" in problem
    # A Kubernetes emptyDir in memory goes with the pod too.
    assert "tmpfs" in ephemeral_data_root_problem(Path("/dev/shm/data"), "kubernetes", mounts)


def test_a_mounted_volume_or_no_container_is_accepted():
    mounts = parse_mountinfo(DOCKER_MOUNTINFO)
    assert ephemeral_data_root_problem(Path("/data"), "docker", mounts) is None
    assert ephemeral_data_root_problem(Path("/mnt/my photos/tuneflow"), "docker", mounts) is None
    assert ephemeral_data_root_problem(Path("/app/data"), None, mounts) is None  # a host's own disk


def test_data_root_defaults_to_the_workers_environment(monkeypatch):
    monkeypatch.delenv("TUNEFLOW_DATA_ROOT", raising=False)
    assert default_data_root() == Path("data")
    monkeypatch.setenv("TUNEFLOW_DATA_ROOT", "/data/tuneflow")
    assert RetrainConfig(source="dataset.zip").data_root == Path("/data/tuneflow")
    # Given explicitly (a flow parameter, --data-root), the config wins over the environment.
    assert RetrainConfig(source="dataset.zip", data_root="elsewhere").data_root == Path("elsewhere")


@pytest.fixture
def inside_docker_without_a_volume(monkeypatch, tmp_path):
    """This process seen as a Docker container whose only mount is its overlay root."""
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(DOCKER_MOUNTINFO.splitlines()[0] + "\n")
    monkeypatch.setattr(storage, "MOUNTINFO", mountinfo)
    monkeypatch.setattr(storage, "detect_container", lambda: "docker")


def test_opening_a_run_refuses_an_ephemeral_data_root_unless_allowed(inside_docker_without_a_volume, tmp_path):
    data_root = tmp_path / "data"
    with pytest.raises(EphemeralDataRootError, match="discarded when the container ends"):
        open_run_dir(data_root, None)
    assert not data_root.exists(), "a refused run must not have written anything"
    run_dir = open_run_dir(data_root, None, allow_ephemeral_data_root=True)
    assert run_dir.is_dir() and run_dir.parent == (data_root / "runs").resolve()


@pytest.mark.slow
def test_the_flow_fails_before_any_work_on_an_ephemeral_data_root(inside_docker_without_a_volume, prefect_server, tmp_path):
    from tuneflow.flows.retrain import retrain

    data_root = tmp_path / "data"
    with pytest.raises(EphemeralDataRootError, match="TUNEFLOW_DATA_ROOT=/data"):
        retrain(RetrainConfig(source=str(tmp_path / "dataset.zip"), data_root=data_root))
    assert not data_root.exists()
