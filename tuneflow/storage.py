"""Where runs keep their data: data_root, and the check that it outlives the process writing it.

Everything a retraining loop remembers lives under data_root: the model versions, `models/current` (the model in
use that each new run must beat), the runs and the Drive cache. A worker in a container (a Kubernetes pod, a
`docker run` without a volume) that writes it into the container's own filesystem loses all of it when the
container ends, and the next run finds no model in use and promotes itself as the first one, week after week,
without an error anywhere. So a run refuses a data_root that is inside a container's own filesystem unless the
config says that is meant (`allow_ephemeral_data_root`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DATA_ROOT_VARIABLE = "TUNEFLOW_DATA_ROOT"
DEFAULT_DATA_ROOT = Path("data")

# The folders under data_root, named here only: every module builds its paths from these.
RUNS_FOLDER = "runs"  # runs/<run id>/: one folder per run
MODELS_FOLDER = "models"  # models/<version>/ and models/current: the model registry
SERVING_FOLDER = "serving"  # serving/<serving name>/<N>/: what TF Serving watches
EXPORTS_FOLDER = "exports"  # exports/<version>-<format>/: `tuneflow export` without -o
SAMPLE_FOLDER = "sample"  # sample/dataset.zip: the demo's generated dataset
CACHE_FOLDER = "cache"  # what can be rebuilt: deleting any of it costs time, never a result
DRIVE_CACHE = Path(CACHE_FOLDER) / "drive"  # cache/drive/<file id>/<md5>/<name>: Drive downloads
PREPARED_CACHE = Path(CACHE_FOLDER) / "prepared"  # cache/prepared/<key>/: a preparation per archive and settings
DECODED_CACHE = Path(CACHE_FOLDER) / "decoded"  # cache/decoded/<size>px-<decoder>/: decoded photos
# The folders of a run (runs/<run id>/) that more than one module writes or prunes.
RUN_DATASET_FOLDER = "dataset"  # the prepared photos: hard links into cache/prepared/
RUN_CACHE_FOLDER = "cache"  # decoded photos when the store is not kept across runs, deleted after each step using it
RUN_CHECKPOINTS_FOLDER = "checkpoints"  # resumable epochs
RUN_WORKERS_FOLDER = "workers"  # the copies other machines of a multi-machine run write
# Files the container runtimes create inside every container they start.
CONTAINER_MARKERS = {"docker": Path("/.dockerenv"), "podman": Path("/run/.containerenv")}
KUBERNETES_VARIABLE = "KUBERNETES_SERVICE_HOST"  # set in every pod's containers
MOUNTINFO = Path("/proc/self/mountinfo")
# A container's own root filesystem (overlay, aufs) and memory-backed mounts vanish with the container; a
# bind-mounted host folder or a persistent volume shows up as its own mount with a disk filesystem (ext4, xfs, nfs).
EPHEMERAL_FILESYSTEMS = frozenset({"overlay", "aufs", "fuse-overlayfs", "tmpfs"})


class EphemeralDataRootError(RuntimeError):
    """data_root would vanish with the container; the message says how to mount persistent storage."""


@dataclass(frozen=True)
class Mount:
    point: Path
    filesystem: str


def default_data_root() -> Path:
    """TUNEFLOW_DATA_ROOT when set (what a worker's environment should give), else `data` in the working folder."""
    value = os.environ.get(DATA_ROOT_VARIABLE, "").strip()
    return Path(value) if value else DEFAULT_DATA_ROOT


def detect_container() -> str | None:
    """'kubernetes', 'docker' or 'podman' when this process runs in such a container, else None."""
    if os.environ.get(KUBERNETES_VARIABLE):
        return "kubernetes"
    return next((runtime for runtime, marker in CONTAINER_MARKERS.items() if marker.exists()), None)


def parse_mountinfo(text: str) -> list[Mount]:
    """The mounts in /proc/self/mountinfo: field 5 is the mount point, the field after ' - ' the filesystem."""
    mounts = []
    for line in text.splitlines():
        fields, _, after = line.partition(" - ")
        parts = fields.split()
        if len(parts) < 5 or not after:
            continue
        # The kernel writes spaces, tabs and newlines in paths as octal escapes (\040).
        point = parts[4].encode().decode("unicode_escape")
        mounts.append(Mount(Path(point), after.split()[0]))
    return mounts


def mount_holding(path: Path, mounts: list[Mount]) -> Mount | None:
    """The mount a path is on: the one with the longest mount point that contains it."""
    holding = [mount for mount in mounts if path == mount.point or mount.point in path.parents]
    return max(holding, key=lambda mount: len(mount.point.parts), default=None)


def ephemeral_data_root_problem(
    data_root: Path, container: str | None, mounts: list[Mount]
) -> str | None:
    """Why data_root would be lost when this container ends, or None when it persists (or no container runs)."""
    if container is None:
        return None
    resolved = Path(os.path.abspath(data_root))
    mount = mount_holding(resolved, mounts)
    if mount is None or mount.filesystem not in EPHEMERAL_FILESYSTEMS:
        return None
    where = "the container's own filesystem" if mount.point == Path("/") else f"a {mount.filesystem} mount ({mount.point})"
    return (
        f"data_root {str(resolved)!r} is on {where} ({mount.filesystem}) inside a {container} container: it is "
        "discarded when the container ends, and with it every model version and models/current, so each run would "
        "promote itself as the first model. Mount persistent storage and point data_root at it: "
        f"`docker run -v /srv/tuneflow:/data -e {DATA_ROOT_VARIABLE}=/data ...`, or a Kubernetes "
        f"PersistentVolumeClaim mounted at /data with {DATA_ROOT_VARIABLE}=/data in the pod's env "
        "(docs/operations.md). If losing everything at the end of the container is really what you want (a one-off "
        "test), set allow_ephemeral_data_root (--allow-ephemeral-data-root)."
    )


def check_data_root_persists(data_root: Path, allow_ephemeral: bool = False) -> None:
    """Refuse a data_root that vanishes with this process's container, before any work starts."""
    if allow_ephemeral:
        return
    try:
        mounts = parse_mountinfo(MOUNTINFO.read_text())
    except OSError:  # not Linux, or /proc not mounted: nothing to check against
        return
    problem = ephemeral_data_root_problem(Path(data_root), detect_container(), mounts)
    if problem:
        raise EphemeralDataRootError(problem)
