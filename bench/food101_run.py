"""Benchmark (not a test): a generated Food-101-sized archive through the whole retrain flow, at 5 and at many
classes: each step's wall time, each process's peak memory and the disk the run leaves.

    python bench/food101_run.py                                        # 101 classes x 1,000 photos: all of Food-101
    python bench/food101_run.py --classes 101 --photos-per-class 50    # the same shape in a few minutes

Each case is a fresh data_root and a fresh Prefect home, and `tuneflow.flows.retrain.retrain` in a process of its
own (the flow process), which starts the ephemeral Prefect server and the training process as it always does.
The archive is class folders of 512-px JPEGs (bench/prepare_bench.py's `build_zip`, kept under --out between
runs); training is at 32 px, the head only, from a ResNet50 weights file this script writes (random values, as
the tests' weights fixture: no download), so the flow's own costs show rather than ResNet50's at 224 px.

Peak memory: every process of the flow's tree is sampled (psutil) every 0.2 s, each sample also reading the
kernel's own high-water mark (VmHWM), so a process's peak is exact up to its last sample. The flow process runs
every step but training; its peak during the evaluate step is the "evaluation" row. Each step's wall time comes
from Prefect's task runs. The disk: what the run leaves under data_root, each file counted once whatever links
to it (the prepared photos are hard links into cache/prepared, the model version a hard link to the run's model),
by folder, with the archive beside it; and the largest the run's checkpoints grew while training (they are
removed when the run finishes).

Targets: each process within 1.5x of its peak at --baseline-classes (5), and each under 2 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))
sys.path.insert(0, str(PROJECT_ROOT / "bench"))

from prepare_bench import build_zip  # noqa: E402

IMAGE_SIZE = 32
SAMPLE_SECONDS = 0.2
PEAK_RATIO_TARGET = 1.5
PEAK_MB_TARGET = 2000
STEPS = ("fetch-dataset", "fetch-weights", "prepare-dataset", "fine-tune", "evaluate-model", "promote-model",
         "write-report", "prune-old-runs")
# Where an inode is counted: the first of these folders (under data_root) that holds it.
DISK_PARTS = ("cache/prepared", "cache/decoded", "runs", "models", "serving")


def write_weights(path: Path) -> None:
    import keras

    keras.applications.ResNet50(include_top=False, weights=None, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3)).save_weights(
        path)


def run_flow_once(config_file: Path, result_file: Path) -> None:
    """In the flow process: run the retrain flow, then write each task run's start and end."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from tuneflow.config import RetrainConfig
    from tuneflow.flows.retrain import retrain

    state = retrain(RetrainConfig.model_validate_json(config_file.read_text()), return_state=True)
    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    steps = {run.name.rsplit("-", 1)[0]: (run.start_time.timestamp(), run.end_time.timestamp())
             for run in task_runs if run.start_time and run.end_time}
    result_file.write_text(json.dumps({"state": state.type.value, "steps": steps,
                                       "flow": (flow_run.start_time.timestamp(), flow_run.end_time.timestamp())}))


def role_of(process, flow_pid: int) -> str:
    if process.pid == flow_pid:
        return "flow process"
    command = " ".join(process.cmdline())
    if "tuneflow.training.worker" in command:
        return "training process"
    if "tuneflow.dataset.extract" in command:
        return "extraction helpers"
    if "uvicorn" in command or "prefect" in command and "server" in command:
        return "Prefect server"
    return f"other ({command[:60]})"


def high_water_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class TreeSampler(threading.Thread):
    """Peak resident memory of every process under a root process, and the flow process's RSS over time."""

    def __init__(self, root_pid: int, checkpoints_glob: tuple[Path, str]):
        super().__init__(daemon=True)
        self.root_pid, self.checkpoints_glob = root_pid, checkpoints_glob
        self.peaks: dict[str, float] = {}
        self.flow_samples: list[tuple[float, float]] = []
        self.checkpoints_peak = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        import psutil

        root = psutil.Process(self.root_pid)
        # By process, its role as last seen (a child's command line is its parent's until it execs) and its peak.
        roles: dict[int, str] = {}
        peaks: dict[int, float] = {}
        while not self.stopped.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            now = time.time()
            for process in tree:
                try:
                    roles[process.pid] = role_of(process, self.root_pid)
                    rss = process.memory_info().rss / 2**20
                except psutil.Error:
                    continue
                peaks[process.pid] = max(peaks.get(process.pid, 0.0), rss, high_water_mb(process.pid))
                if process.pid == self.root_pid:
                    self.flow_samples.append((now, rss))
            folder, pattern = self.checkpoints_glob
            self.checkpoints_peak = max(self.checkpoints_peak, sum(
                file.stat().st_size for file in folder.glob(pattern) if file.is_file()))
            self.peaks = {}
            for pid, peak in peaks.items():
                self.peaks[roles[pid]] = max(self.peaks.get(roles[pid], 0.0), peak)
            self.stopped.wait(SAMPLE_SECONDS)


def disk_by_part(data_root: Path) -> dict[str, int]:
    """Bytes under data_root by DISK_PARTS, each inode counted once, in the first part that holds it."""
    seen: set[tuple[int, int]] = set()
    sizes: dict[str, int] = {}
    for part in (*DISK_PARTS, "."):
        total = 0
        for folder, _, files in os.walk(data_root / part):
            for name in files:
                info = os.lstat(os.path.join(folder, name))
                if (info.st_dev, info.st_ino) not in seen:
                    seen.add((info.st_dev, info.st_ino))
                    total += info.st_size
        sizes["other" if part == "." else part] = total
    return sizes


def run_case(out: Path, classes: int, per_class: int, photo_size: int, weights: Path, epochs: int) -> dict:
    archive = build_zip(out / f"food-{classes}x{per_class}-{photo_size}px.zip", classes, per_class, photo_size, 85)
    case = out / f"case-{classes}x{per_class}"
    subprocess.run(["rm", "-rf", str(case)], check=True)
    data_root = case / "data"
    data_root.mkdir(parents=True)
    config = {
        "source": str(archive), "data_root": str(data_root), "seed": 0,
        "training": {"weights": str(weights), "image_size": IMAGE_SIZE, "epochs": epochs, "fine_tune_epochs": 0,
                     "batch_size": 32},
        # A benchmark's data_root may sit in a container's own filesystem: nothing here must outlive it.
        "allow_ephemeral_data_root": True,
    }
    (case / "config.json").write_text(json.dumps(config))
    environment = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT), TF_CPP_MIN_LOG_LEVEL="2",
                       PREFECT_HOME=str(case / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
                       # A fresh home's database is created and migrated first: on busy cores that misses the 20 s
                       # default (docs/field-notes: "Ephemeral server on a fresh machine").
                       PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="600")
    environment.pop("PREFECT_API_URL", None)  # the ephemeral server, started by the flow process as a user's would be
    started = time.time()
    with (case / "flow.log").open("wb") as log:
        process = subprocess.Popen([sys.executable, __file__, "--flow-once", str(case / "config.json"),
                                    str(case / "result.json")], stdout=log, stderr=subprocess.STDOUT, env=environment)
        sampler = TreeSampler(process.pid, (data_root / "runs", "*/checkpoints/*"))
        sampler.start()
        process.wait()
        sampler.stopped.set()
        sampler.join()
    if process.returncode != 0 or not (case / "result.json").is_file():
        tail = (case / "flow.log").read_text(errors="replace")[-3000:]
        raise RuntimeError(f"the flow process for {classes} classes exited with {process.returncode}:\n{tail}")
    result = json.loads((case / "result.json").read_text())
    steps = {}
    for name, (begin, end) in result["steps"].items():
        # A step shorter than a sampling interval still gets the samples around it.
        during = [rss for when, rss in sampler.flow_samples if begin - SAMPLE_SECONDS <= when <= end + SAMPLE_SECONDS]
        steps[name] = {"seconds": end - begin, "flow_rss_mb": max(during, default=0.0)}
    peaks = dict(sampler.peaks)
    if "evaluate-model" in steps:
        peaks["evaluation (flow process)"] = steps["evaluate-model"]["flow_rss_mb"]
    return {"classes": classes, "photos": classes * per_class, "state": result["state"], "steps": steps,
            "peaks": peaks, "process_seconds": time.time() - started,
            "flow_seconds": result["flow"][1] - result["flow"][0], "disk": disk_by_part(data_root),
            "archive_bytes": archive.stat().st_size, "checkpoints_peak": sampler.checkpoints_peak}


def print_report(small: dict, large: dict) -> bool:
    cases = (small, large)
    heading = "".join(f"{str(case['classes']) + ' classes':>26}" for case in cases)
    print(f"\n{'':20}{heading}\n{'step':20}" + f"{'wall s':>12}{'flow RSS MB':>14}" * 2)
    for step in STEPS:
        cells = "".join(f"{case['steps'].get(step, {}).get('seconds', float('nan')):>12.1f}"
                        f"{case['steps'].get(step, {}).get('flow_rss_mb', float('nan')):>14.0f}" for case in cases)
        print(f"{step:20}{cells}")
    print(f"{'flow run':20}" + "".join(f"{case['flow_seconds']:>12.1f}{'':>14}" for case in cases))
    print(f"{'flow process':20}" + "".join(f"{case['process_seconds']:>12.1f}{'':>14}" for case in cases)
          + "   (start-up, imports and the server included)")

    print(f"\n{'peak RSS MB':28}{small['classes']:>10}{large['classes']:>10}{'ratio':>8}  target <= "
          f"{PEAK_RATIO_TARGET}x and < {PEAK_MB_TARGET} MB")
    ok = True
    for role in sorted(set(small["peaks"]) | set(large["peaks"])):
        before, after = small["peaks"].get(role), large["peaks"].get(role, 0.0)
        # A process that lived less than a sampling interval in the small case has no peak to compare with.
        ratio = f"{after / before:>7.2f}x" if before else "      -"
        fine = (not before or after / before <= PEAK_RATIO_TARGET) and after < PEAK_MB_TARGET
        ok &= fine
        print(f"{role:28}{before or 0:>10.0f}{after:>10.0f}{ratio}  {'OK' if fine else 'MISSED'}"
              + ("" if before else f"   (not seen at {small['classes']} classes: gone within "
                 f"{SAMPLE_SECONDS} s; under {PEAK_MB_TARGET} MB checked)"))

    print(f"\n{'disk MB':28}{small['classes']:>10}{large['classes']:>10}{'per photo KB':>14}")
    rows = [*large["disk"], "total under data_root", "archive (outside data_root)", "checkpoints, peak in training"]
    for row in rows:
        values = []
        for case in cases:
            disk = case["disk"]
            values.append({"total under data_root": sum(disk.values()), "archive (outside data_root)":
                           case["archive_bytes"], "checkpoints, peak in training": case["checkpoints_peak"]
                           }.get(row, disk.get(row, 0)))
        per_photo = (values[1] - values[0]) / (large["photos"] - small["photos"]) / 1000
        print(f"{row:28}{values[0] / 1e6:>10.1f}{values[1] / 1e6:>10.1f}{per_photo:>14.2f}")
    print("(per photo: the difference between the two cases over the difference in photos)")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=101)
    parser.add_argument("--photos-per-class", type=int, default=1000)
    parser.add_argument("--baseline-classes", type=int, default=5, help="the case every peak is compared with")
    parser.add_argument("--photo-size", type=int, default=512, help="the generated JPEGs' side (Food-101: 512)")
    parser.add_argument("--epochs", type=int, default=1, help="head epochs (the only phase trained here)")
    parser.add_argument("--out", default="data/bench/food101-run")
    parser.add_argument("--flow-once", nargs=2, metavar=("CONFIG", "RESULT"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.flow_once:
        run_flow_once(Path(options.flow_once[0]), Path(options.flow_once[1]))
        return
    out = Path(options.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    weights = out / f"resnet50_notop_{IMAGE_SIZE}px.weights.h5"
    if not weights.is_file():  # in a process of its own: TensorFlow stays out of this one's samples
        subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(PROJECT_ROOT / 'bench')!r}); "
                        f"import food101_run; food101_run.write_weights(__import__('pathlib').Path({str(weights)!r}))"],
                       check=True, env=dict(os.environ, PYTHONPATH=str(PROJECT_ROOT), TF_CPP_MIN_LOG_LEVEL="2"))
    cases = []
    for classes in (options.baseline_classes, options.classes):
        print(f"{classes} classes x {options.photos_per_class} photos: running the flow ...", flush=True)
        cases.append(run_case(out, classes, options.photos_per_class, options.photo_size, weights, options.epochs))
    (out / "results.json").write_text(json.dumps(cases, indent=2))
    ok = print_report(*cases)
    print(f"\nevery process within {PEAK_RATIO_TARGET}x of its {options.baseline_classes}-class peak and under "
          f"{PEAK_MB_TARGET} MB: {'OK' if ok else 'MISSED'} (results in {out / 'results.json'})")


if __name__ == "__main__":
    main()
