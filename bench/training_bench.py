"""Benchmark (not a test): our tf.data input pipeline against keras.utils.image_dataset_from_directory on photos
with the sizes and encodings of a real photo set, and ResNet50 training speed per phase, side by side in one run.

    python bench/training_bench.py [--images 2000] [--mix real|food101] [--train-steps 3] [--rounds 3]

The photos (bench/photo_mix.py: Food-101's 512x512, 512x384, 384x512, 512x341 and smaller photos, progressive
JPEGs, photos preparation re-encoded, PNGs and, in the `real` mix, 2 % phone photos; `food101` leaves the phone
photos out) are generated once under data/bench/ and reused. It prints how many photos take each decode plan.
Targets: our first epoch (the decoding pass into the disk cache included) at least 1.5x
image_dataset_from_directory's on the real mix, later epochs at least 10x. CPU milliseconds per photo are
printed beside the wall-clock rates: they move less when something else runs on the machine.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from photo_mix import FOOD101_PHOTO_MIX, REAL_PHOTO_MIX, write_photo_mix  # noqa: E402

from tuneflow.sample import SAMPLE_CLASSES  # noqa: E402

IMAGE_SIZE = 224
BATCH = 32
MIXES = {"real": REAL_PHOTO_MIX, "food101": FOOD101_PHOTO_MIX}


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
    options = parser.parse_args()

    started = time.perf_counter()
    root = write_photo_mix(Path(options.root) / f"photos-{options.mix}", SAMPLE_CLASSES,
                           options.images // len(SAMPLE_CLASSES), MIXES[options.mix])
    print(f"dataset: {options.images} photos, the {options.mix!r} mix, in {root} "
          f"(ready in {time.perf_counter() - started:.0f} s)")

    import keras
    import tensorflow as tf

    from tuneflow.image_decoding import plan_decode_of_file
    from tuneflow.training import list_split, make_input_pipeline

    classes = list(SAMPLE_CLASSES)
    paths, labels = list_split(root, "train", classes)
    count = len(paths)
    plans = Counter(plan_decode_of_file(path, IMAGE_SIZE) for path in paths)
    print(f"\ndecode plans at {IMAGE_SIZE} px (share of photos):")
    for plan, number in plans.most_common():
        kind = f"JPEG at 1/{plan.ratio}" if plan.jpeg else "PNG"
        print(f"  {kind:>12}, then {plan.resize:<9} {number / count:6.1%}")
    # Fresh pipelines every round (a first epoch can only be timed once per pipeline), the two interleaved, the
    # best round of each kept: on a shared machine that is what cancels other load out best.
    ours_best, theirs_best = [0.0, 0.0], [0.0, 0.0]
    ours_cpu, theirs_cpu = [float("inf")] * 2, [float("inf")] * 2
    for round_number in range(options.rounds):
        # Building our pipeline runs the decoding pass into a fresh disk cache: part of our first epoch.
        cache = root.parent / "cache"
        shutil.rmtree(cache, ignore_errors=True)
        started, cpu_started = time.perf_counter(), time.process_time()
        ours = make_input_pipeline(paths, labels, len(classes), IMAGE_SIZE, BATCH, seed=round_number,
                                   cache_dir=cache, shuffle=True)
        decoding = (time.perf_counter() - started, time.process_time() - cpu_started)
        theirs = keras.utils.image_dataset_from_directory(
            root / "train", image_size=(IMAGE_SIZE, IMAGE_SIZE), batch_size=BATCH, shuffle=True, seed=round_number,
            verbose=False,
        )
        ours_seconds = time_epochs(ours)
        ours_seconds[0] = (ours_seconds[0][0] + decoding[0], ours_seconds[0][1] + decoding[1])
        for best, cpu, seconds in ((ours_best, ours_cpu, ours_seconds), (theirs_best, theirs_cpu, time_epochs(theirs))):
            best[:] = [max(b, count / wall) for b, (wall, _) in zip(best, seconds)]
            cpu[:] = [min(c, 1000 * used / count) for c, (_, used) in zip(cpu, seconds)]
        del ours, theirs
    shutil.rmtree(root.parent / "cache", ignore_errors=True)
    print(f"\ninput pipeline, {count} photos -> {IMAGE_SIZE} px batches of {BATCH} "
          f"(images/s and CPU ms per photo, best of {options.rounds} interleaved rounds)")
    print(f"{'':34}{'epoch 1':>10}{'epoch 2':>10}{'CPU ms 1':>10}{'CPU ms 2':>10}")
    print(f"{'keras image_dataset_from_directory':34}{theirs_best[0]:>10.0f}{theirs_best[1]:>10.0f}"
          f"{theirs_cpu[0]:>10.2f}{theirs_cpu[1]:>10.2f}")
    print(f"{'tuneflow (decode once, cache)':34}{ours_best[0]:>10.0f}{ours_best[1]:>10.0f}"
          f"{ours_cpu[0]:>10.2f}{ours_cpu[1]:>10.3f}")
    first, later = ours_best[0] / theirs_best[0], ours_best[1] / theirs_best[1]
    print(f"{'ratio tuneflow / keras':34}{first:>9.2f}x{later:>9.2f}x{theirs_cpu[0] / ours_cpu[0]:>9.2f}x"
          f"{theirs_cpu[1] / ours_cpu[1]:>9.1f}x   targets: >= 1.5x, >= 10x "
          f"{'OK' if first >= 1.5 and later >= 10 else 'MISSED'}")

    from tuneflow.model import build_classifier
    from tuneflow.training import set_trainable_stages

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
