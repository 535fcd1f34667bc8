"""The fastest first epoch any pipeline that decodes its photos can have on this machine, next to keras's.

Every JPEG decoder must do the entropy (Huffman) decoding of every coefficient, whatever size it outputs;
libjpeg-turbo's 1/8 DCT scaling keeps only that and the DC coefficients (no IDCT, no upsampling, 1/64 of the
pixels). So a tf.data pipeline that reads each photo and decodes it at 1/8 (PNGs whole: they cannot be scaled),
with nothing else, no resize, no batching copy, no cache and no training, bounds from above every first epoch
that decodes the photos. Its images/s next to `keras.utils.image_dataset_from_directory` on the same photo mix,
interleaved, best of --rounds, says whether a first-epoch target (`--target`, 1.0x keras since issue #27 withdrew
the 1.5x one) can be reached by decoding faster. A third
row decodes each photo at the DCT scale its decode plan uses (the one the resize quality needs), nothing else:

    python bench/decode_floor.py            # the photo mix of bench/training_bench.py (generated once)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tuneflow.dataset.photo_mix import MIXES, write_photo_mix  # noqa: E402

from tuneflow.dataset.sample import SAMPLE_CLASSES  # noqa: E402

IMAGE_SIZE = 224
BATCH = 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--mix", choices=sorted(MIXES), default="real")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--root", default="data/bench")
    parser.add_argument("--target", type=float, default=1.0, help="the first-epoch target, as a multiple of keras")
    options = parser.parse_args()

    root = write_photo_mix(Path(options.root) / f"photos-{options.mix}", SAMPLE_CLASSES,
                           options.images // len(SAMPLE_CLASSES), MIXES[options.mix])
    import keras
    import tensorflow as tf

    from tuneflow.imaging.decoding import plan_decodes, read_image_header

    paths = sorted(str(path) for path in (root / "train").rglob("*") if path.is_file())
    count = len(paths)

    def entropy_decoding_only(path):
        data = tf.io.read_file(path)
        # The shape only, so the two branches agree; what is timed is the decoding itself.
        return tf.shape(tf.cond(
            tf.io.is_jpeg(data),
            lambda: tf.io.decode_jpeg(data, channels=3, ratio=8, dct_method="INTEGER_FAST"),
            lambda: tf.io.decode_png(data, channels=3),
        ))

    # The DCT scale each photo's decode plan uses: the smallest decode that keeps the resize quality the decoder
    # promises (tuneflow/imaging/decoding.py). Grouped by scale, as the decoded cache's pass groups them.
    by_ratio: dict[int, list[str]] = {}
    for path, plan in zip(paths, plan_decodes([read_image_header(path) for path in paths], IMAGE_SIZE)):
        by_ratio.setdefault(plan.ratio if plan.jpeg else 0, []).append(path)

    def decoding_at(ratio: int):
        def decode(path):
            data = tf.io.read_file(path)
            if ratio == 0:
                return tf.shape(tf.io.decode_png(data, channels=3))
            return tf.shape(tf.io.decode_jpeg(data, channels=3, ratio=ratio, dct_method="INTEGER_FAST"))
        return decode

    def one_epoch(row: str) -> tuple[float, float]:
        started, cpu_started = time.perf_counter(), time.process_time()
        if row == "keras":
            dataset = keras.utils.image_dataset_from_directory(
                root / "train", image_size=(IMAGE_SIZE, IMAGE_SIZE), batch_size=BATCH, shuffle=True, verbose=False)
        elif row == "floor":
            dataset = tf.data.Dataset.from_tensor_slices(paths).map(
                entropy_decoding_only, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False).batch(BATCH)
        else:
            groups = [tf.data.Dataset.from_tensor_slices(group).map(
                decoding_at(ratio), num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
                for ratio, group in by_ratio.items()]
            dataset = groups[0]
            for group in groups[1:]:
                dataset = dataset.concatenate(group)
            dataset = dataset.batch(BATCH)
        for _ in dataset:
            pass
        return count / (time.perf_counter() - started), 1000 * (time.process_time() - cpu_started) / count

    rows = {"keras": "keras image_dataset_from_directory",
            "floor": "entropy decoding only (1/8 DCT, nothing else)",
            "plan": "decode at the plan's scale, nothing else"}
    best = {row: (0.0, float("inf")) for row in rows}
    for _ in range(options.rounds):
        for row in rows:
            rate, cpu_ms = one_epoch(row)
            best[row] = (max(best[row][0], rate), min(best[row][1], cpu_ms))
    print(f"{count} photos, the {options.mix!r} mix, first epoch, best of {options.rounds} interleaved rounds")
    print(f"{'':48}{'images/s':>10}{'CPU ms/photo':>14}{'vs keras':>10}")
    for row, label in rows.items():
        print(f"{label:48}{best[row][0]:>10.0f}{best[row][1]:>14.2f}{best[row][0] / best['keras'][0]:>9.2f}x")
    target = options.target * best["keras"][0]
    for row, what in (("floor", "any pipeline that decodes every photo"),
                      ("plan", "a pipeline that decodes at the scales the resize quality needs")):
        verdict = "within reach" if best[row][0] >= target else "NOT reachable"
        print(f"{options.target:g}x keras is {target:.0f} images/s; {what}: at most {best[row][0]:.0f} ({verdict}, before "
              "resizing, caching and batching)")


if __name__ == "__main__":
    main()
