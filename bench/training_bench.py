"""Benchmark (not a test): our tf.data input pipeline against keras.utils.image_dataset_from_directory on photos
with the sizes and encodings of a real photo set, and ResNet50 training speed per phase, side by side in one run.

    python bench/training_bench.py [--images 2000] [--mix real|food101|food101-real] [--new-share 0.1]
                                   [--train-steps 3] [--rounds 3] [--no-training] [--store DIR]

The photos (tuneflow/dataset/photo_mix.py: Food-101's 512x512, 512x384, 384x512, 512x341 and smaller photos,
progressive JPEGs, photos preparation re-encoded, PNGs and, in the `real` mix, 2 % phone photos; `food101` leaves the phone
photos out; `food101-real` follows the shapes, chroma subsampling and file sizes measured on real Food-101
photos) are generated once under data/bench/ and reused. It prints their file-size percentiles and chroma
subsampling, and how many photos take each decode plan. Targets, against image_dataset_from_directory: a first
run's first epoch (decoding every photo and writing it into the decoded store, building the pipeline included)
at least 1.0x, later epochs at least 10x, a weekly retrain's first epoch at least 2x. Two rows of ours: nothing decoded
before (a first run), and a weekly retrain, whose store (data_root/cache/decoded/) holds last week's decoded
photos, all but `--new-share` of them, dropped from the page cache first so they are read back from disk. CPU
milliseconds per photo are printed beside the wall-clock rates: they move less when something else runs on the
machine (the TensorFlow threads' idle spinning counts as CPU too, so compare them only within one run). Each
round's first-epoch rates are printed too: on a 2-core machine keras' loader runs at one of two speeds, as
tf.data's autotuner happens to settle (one core busy or both), and the best of the rounds is its faster one
when any round caught it. `--store DIR` puts the decoded stores elsewhere than beside the photos (another disk,
or /dev/shm to see what writing them costs on this one). Every round and row writes a new store, all deleted at the
end: on a disk without a journal, files created soon after thousands were deleted cost the kernel up to 1 ms each.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tuneflow.dataset.photo_mix import MIXES, describe_photos, write_photo_mix  # noqa: E402

from tuneflow.dataset.sample import SAMPLE_CLASSES  # noqa: E402

IMAGE_SIZE = 224
BATCH = 32
# (first epoch, later epochs) against keras: a first run, and the first epoch of a weekly retrain, which decodes
# only its new photos (its later epochs are a first run's: every photo read from the store).
TARGETS = {"cold": (1.0, 10.0), "weekly": (2.0, None)}


def evict_from_page_cache(folder: Path) -> None:
    """Written to disk and dropped from memory, as a week-old store is (no root needed for clean pages)."""
    os.sync()
    for file in folder.rglob("*"):
        if file.is_file():
            descriptor = os.open(file, os.O_RDONLY)
            try:
                os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(descriptor)


def time_epochs(dataset, epochs: int = 2) -> list[tuple[float, float]]:
    """(wall seconds, CPU seconds of this process) per full pass, pixels materialised."""
    seconds = []
    for _ in range(epochs):
        started, cpu_started = time.perf_counter(), time.process_time()
        for images, _ in dataset:
            images.numpy()
        seconds.append((time.perf_counter() - started, time.process_time() - cpu_started))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--mix", choices=sorted(MIXES), default="real")
    parser.add_argument("--train-steps", type=int, default=3, help="timed training steps per phase and size")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved input-pipeline rounds (best one kept)")
    parser.add_argument("--root", default="data/bench")
    parser.add_argument("--new-share", type=float, default=0.1,
                        help="photos new since last week's run, for the weekly-retrain row")
    parser.add_argument("--no-training", action="store_true", help="only the input pipeline, not ResNet50's speed")
    parser.add_argument("--store", help="where the decoded store goes (default: beside the photos)")
    options = parser.parse_args()

    started = time.perf_counter()
    root = write_photo_mix(Path(options.root) / f"photos-{options.mix}", SAMPLE_CLASSES,
                           options.images // len(SAMPLE_CLASSES), MIXES[options.mix])
    print(f"dataset: {options.images} photos, the {options.mix!r} mix, in {root} "
          f"(ready in {time.perf_counter() - started:.0f} s)")

    import keras
    import tensorflow as tf

    from tuneflow.imaging.decoded_cache import ensure_decoded_cache
    from tuneflow.imaging.decoding import plan_decodes, read_image_header
    from tuneflow.imaging.pipeline import list_split, make_input_pipeline

    classes = list(SAMPLE_CLASSES)
    paths, labels = list_split(root, "train", classes)
    count = len(paths)
    print(describe_photos(paths))
    plans = Counter(plan_decodes([read_image_header(path) for path in paths], IMAGE_SIZE))
    print(f"\ndecode plans at {IMAGE_SIZE} px (share of photos):")
    for plan, number in plans.most_common():
        kind = f"JPEG at 1/{plan.ratio}" if plan.jpeg else "PNG"
        print(f"  {kind:>12}, then {plan.resize:<9} {number / count:6.1%}")
    # Last week's photos for the weekly-retrain row: all but --new-share of them, spread over classes and kinds.
    last_week = sorted(random.Random(0).sample(range(count), round(count * (1 - options.new_share))))
    # Fresh pipelines every round (a first epoch can only be timed once per pipeline), the three interleaved, the
    # best round of each kept: on a shared machine that is what cancels other load out best.
    rows = {"keras": "keras image_dataset_from_directory", "cold": "tuneflow, nothing decoded before",
            "weekly": f"tuneflow, weekly retrain ({options.new_share:.0%} new)"}
    best = {row: [0.0, 0.0] for row in rows}
    cpu = {row: [float("inf")] * 2 for row in rows}
    first_epochs: dict[str, list[float]] = {row: [] for row in rows}
    # A new, empty store for every round and row, all deleted at the end, not each before the next: a file created
    # soon after thousands were deleted costs up to 1 ms of kernel time on ext4 without a journal (this machine's
    # disk; the kernel scans past every inode deleted in the last 30 s to 5 minutes), and a user's first run follows
    # no such deletion. A fresh store also keeps a weekly row from reading the store of the row before it.
    stores_in = Path(options.store) if options.store else root.parent
    stores_in.mkdir(parents=True, exist_ok=True)
    stores = Path(tempfile.mkdtemp(prefix="bench-decoded-stores-", dir=stores_in))
    for round_number in range(options.rounds):
        for row in rows:
            store = stores / f"round{round_number}-{row}"
            if row == "weekly":
                # What last week's run left in data_root/cache/decoded/, read back from disk, not from memory.
                ensure_decoded_cache([paths[i] for i in last_week], IMAGE_SIZE, store)
                evict_from_page_cache(store)
            started, cpu_started = time.perf_counter(), time.process_time()
            if row == "keras":
                dataset = keras.utils.image_dataset_from_directory(
                    root / "train", image_size=(IMAGE_SIZE, IMAGE_SIZE), batch_size=BATCH, shuffle=True,
                    seed=round_number, verbose=False,
                )
            else:  # building our pipeline reads every photo's header and digest: part of our first epoch
                dataset = make_input_pipeline(paths, labels, len(classes), IMAGE_SIZE, BATCH, seed=round_number,
                                              cache_dir=store, shuffle=True)
            building = (time.perf_counter() - started, time.process_time() - cpu_started)
            seconds = time_epochs(dataset)
            seconds[0] = (seconds[0][0] + building[0], seconds[0][1] + building[1])
            best[row] = [max(b, count / wall) for b, (wall, _) in zip(best[row], seconds)]
            first_epochs[row].append(count / seconds[0][0])
            cpu[row] = [min(c, 1000 * used / count) for c, (_, used) in zip(cpu[row], seconds)]
            del dataset
    shutil.rmtree(stores, ignore_errors=True)
    print(f"\ninput pipeline, {count} photos -> {IMAGE_SIZE} px batches of {BATCH} "
          f"(images/s and CPU ms per photo, best of {options.rounds} interleaved rounds)")
    print(f"{'':38}{'epoch 1':>9}{'epoch 2':>9}{'CPU ms 1':>10}{'CPU ms 2':>10}{'e1 vs keras':>13}{'e2 vs keras':>13}")
    for row, label in rows.items():
        print(f"{label:38}{best[row][0]:>9.0f}{best[row][1]:>9.0f}{cpu[row][0]:>10.2f}{cpu[row][1]:>10.3f}"
              f"{best[row][0] / best['keras'][0]:>12.2f}x{best[row][1] / best['keras'][1]:>12.1f}x")
    print("epoch 1 in each round (images/s): " + "; ".join(
        f"{row} {' '.join(f'{rate:.0f}' for rate in rates)}" for row, rates in first_epochs.items()))
    for row, (first_target, later_target) in TARGETS.items():
        first, later = (best[row][epoch] / best["keras"][epoch] for epoch in (0, 1))
        verdicts = [f"first epoch {first:.2f}x (target {first_target:.1f}x): {'OK' if first >= first_target else 'MISSED'}"]
        if later_target is not None:
            verdicts.append(f"later epochs {later:.1f}x (target {later_target:.0f}x): "
                            f"{'OK' if later >= later_target else 'MISSED'}")
        print(f"{rows[row]}: {'; '.join(verdicts)}")

    if options.no_training:
        return
    from tuneflow.training.model import build_classifier
    from tuneflow.training.phases import set_trainable_stages

    print(f"\nResNet50 training, {tf.config.list_physical_devices('GPU') and 'GPU' or 'CPU'}, float32 (images/s)")
    print(f"{'':12}{'head (frozen base)':>20}{'fine-tune (all)':>18}")
    for size in (224, 96):
        rates = []
        for stages in ((), ("conv1", "conv2", "conv3", "conv4", "conv5")):
            keras.backend.clear_session()
            model, base = build_classifier(len(classes), size, None, 0.2, 0)
            # Pretend-pretrained: BatchNorm frozen as in our fine-tune phase.
            set_trainable_stages(base, stages, freeze_batchnorm=True)
            model.compile(optimizer="adam", loss="categorical_crossentropy")
            batch = tf.data.Dataset.from_tensors(
                (tf.random.uniform((BATCH, size, size, 3), 0, 255), tf.one_hot([0] * BATCH, len(classes)))
            ).repeat()
            model.fit(batch, steps_per_epoch=1, epochs=1, verbose=0, shuffle=False)  # tracing
            started = time.perf_counter()
            model.fit(batch, steps_per_epoch=options.train_steps, epochs=1, verbose=0, shuffle=False)
            rates.append(options.train_steps * BATCH / (time.perf_counter() - started))
        print(f"{size:>4} px     {rates[0]:>20.1f}{rates[1]:>18.1f}")


if __name__ == "__main__":
    main()
