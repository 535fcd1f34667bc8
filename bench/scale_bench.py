"""Benchmark (not a test): Food-101's full shape through preparation and two epochs of the training input pipeline.

    python bench/scale_bench.py [--out /tmp/tuneflow-scale] [--per-class 1000] [--image-size 224] [--batch 32]

Two cases, each in fresh processes so each peak is its own:
  5 classes   x per-class 512-px JPEGs (the notebook's size)
  101 classes x per-class 512-px JPEGs (all of Food-101: 101,000 photos at the default 1,000)
For each: `prepare_dataset` (timed, with its peak memory), then the training input pipeline
(`tuneflow.imaging.pipeline.make_input_pipeline`: the decoding pass into the disk cache, then the shuffled cached
pixels), iterated for two epochs at --image-size, with images/s for epoch 1 (decoding included) and epoch 2, and
the pipeline process's peak resident memory (VmHWM). The ratio printed last is the 101-class peak over the
5-class peak: the target is at most 1.5x, and under 4 GB. Needs about 25 GB of free disk at the default size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))
sys.path.insert(0, str(PROJECT_ROOT / "bench"))

from prepare_bench import build_zip, peak_mb, settle  # noqa: E402  (the same generated photos)


def in_fresh_process(*arguments: str) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, *arguments], capture_output=True, text=True,
        env=dict(os.environ, PYTHONPATH=str(PROJECT_ROOT), TF_CPP_MIN_LOG_LEVEL="2"),
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"{arguments[0]} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def prepare_once(archive: Path, dest: Path) -> None:
    from tuneflow.config import DataSettings
    from tuneflow.dataset.prepare import prepare_dataset

    started = time.perf_counter()
    prepared = prepare_dataset(archive, dest, DataSettings(), seed=0)
    print(json.dumps({"seconds": time.perf_counter() - started, "images": prepared.total, "peak_mb": peak_mb()}))


def pipeline_once(dataset_root: Path, cache: Path, image_size: int, batch: int) -> None:
    from tuneflow.imaging.pipeline import list_split, make_input_pipeline

    classes = sorted(path.name for path in (dataset_root / "train").iterdir())
    paths, labels = list_split(dataset_root, "train", classes)
    started = time.perf_counter()
    dataset = make_input_pipeline(paths, labels, len(classes), image_size, batch, seed=0, cache_dir=cache, shuffle=True)
    seconds = []
    for epoch in range(2):
        for _ in dataset:
            pass
        seconds.append(time.perf_counter() - started)
        started = time.perf_counter()
    print(json.dumps({"images": len(paths), "epoch_seconds": seconds, "peak_mb": peak_mb()}))


def run_case(out: Path, classes: int, per_class: int, image_size: int, batch: int) -> dict:
    archive = build_zip(out / f"food-{classes}x{per_class}.zip", classes, per_class, 512, 85)
    work = out / f"case-{classes}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    settle()
    prepared = in_fresh_process("--prepare-once", str(archive), str(work / "dataset"))
    settle()
    pipeline = in_fresh_process("--pipeline-once", str(work / "dataset"), str(work / "cache"), str(image_size), str(batch))
    shutil.rmtree(work, ignore_errors=True)
    first, second = pipeline["epoch_seconds"]
    return {
        "classes": classes, "photos": prepared["images"], "prepare_s": prepared["seconds"],
        "prepare_peak_mb": prepared["peak_mb"], "train_images": pipeline["images"],
        "epoch1_per_s": pipeline["images"] / first, "epoch2_per_s": pipeline["images"] / second,
        "pipeline_peak_mb": pipeline["peak_mb"],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/tuneflow-scale"))
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--prepare-once", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--pipeline-once", nargs=4, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.prepare_once:
        return prepare_once(*map(Path, options.prepare_once))
    if options.pipeline_once:
        root, cache, size, batch = options.pipeline_once
        return pipeline_once(Path(root), Path(cache), int(size), int(batch))

    options.out.mkdir(parents=True, exist_ok=True)
    rows = [run_case(options.out, classes, options.per_class, options.image_size, options.batch) for classes in (5, 101)]
    print(f"\n{options.per_class} generated 512-px JPEGs per class, pipeline at {options.image_size} px, batch "
          f"{options.batch}, decoded cache on disk\n")
    print("| classes | photos | prepare s | prepare peak MB | train images | epoch 1 img/s | epoch 2 img/s | "
          "pipeline peak MB |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['classes']} | {row['photos']:,} | {row['prepare_s']:.0f} | {row['prepare_peak_mb']:.0f} | "
              f"{row['train_images']:,} | {row['epoch1_per_s']:.0f} | {row['epoch2_per_s']:.0f} | "
              f"{row['pipeline_peak_mb']:.0f} |")
    small, large = rows
    ratio = large["pipeline_peak_mb"] / small["pipeline_peak_mb"]
    print(f"\npipeline peak memory, 101 classes / 5 classes: {ratio:.2f}x (target <= 1.5x); "
          f"101 classes: {large['pipeline_peak_mb'] / 1024:.2f} GB (target < 4 GB)")


if __name__ == "__main__":
    main()
