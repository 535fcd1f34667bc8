"""Benchmark (not a test): evaluation's speed against plain `model.predict` on the same photos, in one run.

    python bench/evaluation_bench.py [--images 2000] [--mix food101-real] [--image-size 32] [--classes 101]
                                     [--rounds 3] [--per-photo-images 500]

The photos are tuneflow/dataset/photo_mix.py's (generated once under data/bench/, shared with
bench/training_bench.py); the model is our classifier with --classes outputs (untrained: speed does not depend on
the weights). Rows, each the best of --rounds interleaved rounds, in images/s:

  plain model.predict     the photos' pixels already decoded in memory (float32), batch 32: the model's speed
  evaluation              tuneflow.evaluation.evaluate.predict_prepared with the decoded store training leaves
                          behind: reading every file's header and digest, the cached pixels in parallel, batches,
                          the model, the predictions table with every class's probability
  evaluation, cold store  the same with nothing decoded yet (the model in use at another image size, or
                          storage.keep_decoded_photos off): the decoding pass included
  per photo (before)      the per-photo path evaluation took before (tuneflow.evaluation.predict.predict_encoded,
                          which `tuneflow predict` still takes), on the first --per-photo-images photos

Target: evaluation at least 0.8x plain model.predict. Tracing the model's predict function is left out of every
row (each is warmed up first). Absolute rates depend on the machine and its load; compare rows of one run.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tuneflow.dataset.photo_mix import MIXES, write_photo_mix  # noqa: E402

from tuneflow.dataset.sample import SAMPLE_CLASSES  # noqa: E402

TARGET = 0.8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--mix", choices=sorted(MIXES), default="food101-real")
    parser.add_argument("--image-size", type=int, default=32, help="the model's input size (the issue's run: 32)")
    parser.add_argument("--classes", type=int, default=101, help="the model's outputs (columns of the table)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-photo-images", type=int, default=500, help="photos the slow per-photo row predicts")
    parser.add_argument("--root", default="data/bench")
    options = parser.parse_args()

    root = write_photo_mix(Path(options.root) / f"photos-{options.mix}", SAMPLE_CLASSES,
                           options.images // len(SAMPLE_CLASSES), MIXES[options.mix])
    import numpy as np
    import tensorflow as tf

    from tuneflow.evaluation.evaluate import PREDICT_BATCH_SIZE, predict_prepared
    from tuneflow.evaluation.predict import predict_encoded, read_encoded
    from tuneflow.imaging.decoded_cache import ensure_decoded_cache, read_cached
    from tuneflow.imaging.pipeline import list_split
    from tuneflow.training.model import build_classifier, inference_model

    size = options.image_size
    # The photos' own classes first, so every row's true class is one the model knows; then more outputs.
    classes = [*SAMPLE_CLASSES, *(f"class_{index:03d}" for index in range(options.classes - len(SAMPLE_CLASSES)))]
    paths, _ = list_split(root, "train", list(SAMPLE_CLASSES))
    names = [Path(path).relative_to(root).as_posix() for path in paths]
    count = len(names)
    model = inference_model(build_classifier(len(classes), size, None, 0.2, 0)[0])
    store = root.parent / f"decoded-evaluation-{size}px"
    cold_store = root.parent / f"decoded-evaluation-cold-{size}px"
    shutil.rmtree(store, ignore_errors=True)
    # What training leaves in the store kept across runs: every validation photo decoded at the model's size.
    files = ensure_decoded_cache(paths, size, store)
    pixels = np.stack([read_cached(tf.constant(file), size).numpy() for file in files]).astype(np.float32)
    # Trace every predict function once (float32 arrays, uint8 batches) before anything is timed.
    model.predict(pixels[:PREDICT_BATCH_SIZE], batch_size=PREDICT_BATCH_SIZE, verbose=0)
    predict_prepared(model, classes, root, names[:PREDICT_BATCH_SIZE], store)
    per_photo = names[: options.per_photo_images]

    def plain() -> None:
        model.predict(pixels, batch_size=PREDICT_BATCH_SIZE, verbose=0)

    def evaluation() -> None:
        predict_prepared(model, classes, root, names, store)

    def evaluation_cold() -> None:
        shutil.rmtree(cold_store, ignore_errors=True)
        predict_prepared(model, classes, root, names, cold_store)

    def one_by_one() -> None:
        predictions = predict_encoded(model, classes, read_encoded(root, per_photo))
        assert not predictions.unreadable, predictions.unreadable[:3]

    rows = {"plain model.predict (pixels in memory)": (plain, count),
            "evaluation (decoded store, as after training)": (evaluation, count),
            "evaluation, cold store (decoding included)": (evaluation_cold, count),
            "per photo (evaluation before)": (one_by_one, len(per_photo))}
    best = dict.fromkeys(rows, 0.0)
    for _ in range(options.rounds):
        for label, (run, images) in rows.items():
            started = time.perf_counter()
            run()
            best[label] = max(best[label], images / (time.perf_counter() - started))
    shutil.rmtree(store, ignore_errors=True)
    shutil.rmtree(cold_store, ignore_errors=True)

    baseline = best["plain model.predict (pixels in memory)"]
    print(f"\nevaluation at {size} px, {len(classes)} classes, {count} photos of the {options.mix!r} mix "
          f"(images/s, best of {options.rounds} interleaved rounds)")
    print(f"{'':48}{'images/s':>10}{'vs plain':>10}")
    for label, rate in best.items():
        print(f"{label:48}{rate:>10.0f}{rate / baseline:>9.2f}x")
    ratio = best["evaluation (decoded store, as after training)"] / baseline
    print(f"evaluation: {ratio:.2f}x plain model.predict (target {TARGET}x): {'OK' if ratio >= TARGET else 'MISSED'}")


if __name__ == "__main__":
    main()
