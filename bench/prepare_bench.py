"""Benchmark (not a test): dataset preparation against plain `unzip -q` of the same zip.

    python bench/prepare_bench.py [--out /tmp/tuneflow-bench] [--write-to DIR] [--repeats 3] [--skip-large]

Case 1: 5,000 distinct 512-px JPEGs (about 50 KB each, like Food-101's photos), deflated like `zip -r` does.
Case 2: all of Food-101's shape: 101 classes x 1,000 small JPEGs (101,000 files), where per-file cost dominates.

Each case times `unzip -q` and `prepare_dataset` (every image's header checked, hashed, split, manifest written)
alternately, `--repeats` times, and prints the best and median of each with the ratio and peak memory. Preparation
runs in a fresh process per repeat so its peak memory is its own; the timer covers the `prepare_dataset` call only,
not Python's start-up or imports (a flow has those loaded already). `--write-to /dev/shm/...` puts both outputs in
memory, which takes a busy shared disk out of the comparison.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

DISTINCT_BASES = 100
SETTLE_SECONDS = 3  # drawn photos; every file gets its own bytes through a JPEG comment segment


def jpeg_variants(count: int, size: int, quality: int):
    """`count` distinct JPEGs: a few drawn photos, each copy made unique by a COM segment after the SOI marker."""
    from tuneflow.dataset.sample import SAMPLE_CLASSES, draw_dish

    bases = []
    for i in range(min(count, DISTINCT_BASES)):
        buffer = io.BytesIO()
        draw_dish(SAMPLE_CLASSES[i % len(SAMPLE_CLASSES)], random.Random(i), size).save(buffer, "JPEG", quality=quality)
        bases.append(buffer.getvalue())
    for i in range(count):
        comment = f"bench image {i}".encode()
        base = bases[i % len(bases)]
        yield base[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + base[2:]


def build_zip(path: Path, classes: int, per_class: int, size: int, quality: int) -> Path:
    from tuneflow.atomic_files import atomic_destination

    if path.exists():
        return path
    images = jpeg_variants(classes * per_class, size, quality)
    # ZIP_DEFLATED: what `zip -r` writes
    with atomic_destination(path) as partial, zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for c in range(classes):
            for i in range(per_class):
                archive.writestr(f"dataset/class_{c:03d}/{i:05d}.jpg", next(images))
    return path


def settle() -> None:
    """Flush the previous run's writes and deletions (trims on a `discard` mount) before timing the next one."""
    os.sync()
    time.sleep(SETTLE_SECONDS)


def time_unzip(archive: Path, out: Path) -> tuple[float, float, float]:
    """Seconds, CPU seconds (user + system) and peak memory (MB) of `unzip -q` into a fresh folder.

    GNU time reports unzip's own peak; getrusage from Python would also count the Python pages a forked child
    holds until it execs.
    """
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    settle()
    start = time.perf_counter()
    result = subprocess.run(
        ["/usr/bin/time", "-f", "%U %S %M", "unzip", "-q", str(archive), "-d", str(out)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    user, system, peak_kb = result.stderr.strip().splitlines()[-1].split()
    return seconds, float(user) + float(system), int(peak_kb) / 1024


def peak_mb(pid: int | str = "self") -> float:
    """VmHWM: the process's own peak resident memory (reset at exec, unlike ru_maxrss)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    line = next((line for line in status.splitlines() if line.startswith("VmHWM:")), "VmHWM: 0 kB")
    return int(line.split()[1]) / 1024


def cpu_seconds() -> float:
    """User + system CPU of this process and of its finished children (the helper processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def watch_workers(peaks: dict[int, float], stop) -> None:
    """Poll the worker processes' own peaks until stopped."""
    me = os.getpid()
    while not stop.wait(0.05):
        try:
            children = Path(f"/proc/{me}/task/{me}/children").read_text().split()
        except OSError:
            continue
        for child in children:
            try:  # a child polled between fork and exec still shows this process's memory: skip until it is a helper
                helper = b"tuneflow.dataset.extract" in Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if helper:
                peaks[int(child)] = max(peaks.get(int(child), 0.0), peak_mb(child))


def time_prepare(archive: Path, out: Path) -> dict:
    """Run prepare_dataset in a fresh process; returns its seconds and peak memory (main and workers)."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    settle()
    result = subprocess.run(
        [sys.executable, __file__, "--prepare-once", str(archive), str(out / "dataset")],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, PYTHONPATH=str(PROJECT_ROOT)),
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def prepare_once(archive: Path, dest: Path) -> None:
    from tuneflow.dataset.prepare import prepare_dataset
    from tuneflow.config import DataSettings

    peaks: dict[int, float] = {}
    stop = threading.Event()
    watcher = threading.Thread(target=watch_workers, args=(peaks, stop), daemon=True)
    watcher.start()
    start, cpu_start = time.perf_counter(), cpu_seconds()
    prepared = prepare_dataset(archive, dest, DataSettings(), seed=42)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
    stop.set()
    watcher.join()
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu": cpu,
                "main_mb": peak_mb(),
                "worker_mb": max(peaks.values(), default=0.0),
                "workers": len(peaks),
                "kept": prepared.total,
                "skipped": sum(prepared.skipped.values()),
                "counts_first_class": {side: next(iter(n.values())) for side, n in prepared.counts.items()},
            }
        )
    )


def run_case(name: str, archive: Path, out: Path, repeats: int) -> None:
    files = len(zipfile.ZipFile(archive).infolist())
    print(f"\n== {name}: {files:,} files, zip {archive.stat().st_size / 1e6:,.0f} MB ==", flush=True)
    unzips, prepares = [], []
    for repeat in range(repeats):
        unzips.append(time_unzip(archive, out / "unzip"))
        shutil.rmtree(out / "unzip")
        prepares.append(time_prepare(archive, out / "prepare"))
        shutil.rmtree(out / "prepare")
        print(
            f"  run {repeat + 1}: unzip -q {unzips[-1][0]:6.2f} s ({unzips[-1][1]:5.2f} CPU s)   prepare "
            f"{prepares[-1]['seconds']:6.2f} s ({prepares[-1]['cpu']:5.2f} CPU s) "
            f"(kept {prepares[-1]['kept']:,}, skipped {prepares[-1]['skipped']}, first class train/val "
            f"{prepares[-1]['counts_first_class']['train']}/{prepares[-1]['counts_first_class']['val']})",
            flush=True,
        )
    unzip_times = [seconds for seconds, _, _ in unzips]
    prepare_times = [run["seconds"] for run in prepares]
    for label, pick in (("best", min), ("median", statistics.median)):
        u, p = pick(unzip_times), pick(prepare_times)
        print(f"  {label:6}: unzip -q {u:6.2f} s  prepare {p:6.2f} s  ratio {p / u:4.2f}x  ({files / p:,.0f} files/s)")
    u, p = statistics.median(cpu for _, cpu, _ in unzips), statistics.median(run["cpu"] for run in prepares)
    print(f"  CPU (median): unzip -q {u:.2f} s  prepare {p:.2f} s  ratio {p / u:4.2f}x")
    print(
        f"  peak memory: unzip {max(mb for _, _, mb in unzips):,.0f} MB; prepare main process "
        f"{max(run['main_mb'] for run in prepares):,.0f} MB (incl. Prefect/pandas imports), "
        f"{max(run['workers'] for run in prepares)} helper process(es) at most "
        f"{max(run['worker_mb'] for run in prepares):,.0f} MB each",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/tuneflow-bench"), help="where the zips are built")
    parser.add_argument("--write-to", type=Path, help="where unzip and prepare write (default: --out)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-large", action="store_true", help="only the 5,000-image case")
    parser.add_argument("--prepare-once", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare_once:
        prepare_once(*args.prepare_once)
        return
    if shutil.which("unzip") is None:
        sys.exit("unzip is not installed (apt-get install unzip)")
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"cores usable: {len(os.sched_getaffinity(0))}, load average before: {os.getloadavg()[0]:.2f}", flush=True)
    started = time.perf_counter()
    photos = build_zip(args.out / "photos-5000x512px.zip", classes=5, per_class=1000, size=512, quality=85)
    print(f"built/found the 5,000-photo zip in {time.perf_counter() - started:.0f} s", flush=True)
    work = args.write_to or args.out
    print(f"writing into {work}", flush=True)
    run_case("5,000 JPEGs of 512 px, 5 classes", photos, work, args.repeats)
    if not args.skip_large:
        started = time.perf_counter()
        food = build_zip(args.out / "food101-shape-101x1000.zip", classes=101, per_class=1000, size=64, quality=85)
        print(f"\nbuilt/found the 101,000-file zip in {time.perf_counter() - started:.0f} s", flush=True)
        run_case("101 classes x 1,000 JPEGs of 64 px", food, work, args.repeats)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
