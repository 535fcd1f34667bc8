"""The reference notebook's recipe against tuneflow's, on the same data, epochs and initial weights.

    python bench/compare_recipes.py --archive dataset.zip --weights imagenet --image-size 224 --epochs 5
    python bench/compare_recipes.py            # generated sample, random weights, 48 px: runs anywhere

The notebook: pixels scaled by 1/255, flip + 20 % zoom, ResNet50 + Flatten + Dense softmax, everything trainable
from the first step, SGD, batch 16. Ours: tuneflow.training.fine_tune.train_classifier with its defaults (ResNet50's own
preprocessing inside the model, GlobalAveragePooling + Dropout head, frozen-base phase then fine-tuning with
BatchNorm frozen; one full phase from random weights). With pretrained weights, our epochs are split between
the two phases so both recipes train for the same number of epochs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def notebook_recipe(dataset, image_size: int, weights_path: Path | None, epochs: int, seed: int) -> float:
    """The notebook, ported to Keras 3 as literally as it allows (ImageDataGenerator is gone: layers instead)."""
    import keras

    from tuneflow.imaging.pipeline import list_split, make_input_pipeline

    keras.utils.set_random_seed(seed)
    train = make_input_pipeline(*list_split(dataset.root, "train", dataset.classes), len(dataset.classes),
                                image_size, 16, seed, Path(tempfile.mkdtemp()), shuffle=True)
    val = make_input_pipeline(*list_split(dataset.root, "val", dataset.classes), len(dataset.classes),
                              image_size, 16, seed, Path(tempfile.mkdtemp()), shuffle=False)
    inputs = keras.Input((image_size, image_size, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.RandomFlip("horizontal", seed=seed)(x)
    x = keras.layers.RandomZoom(0.2, seed=seed)(x)
    base = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(image_size, image_size, 3))
    if weights_path:
        base.load_weights(weights_path)
    x = keras.layers.Flatten()(base(x))
    model = keras.Model(inputs, keras.layers.Dense(len(dataset.classes), activation="softmax")(x))
    model.compile(optimizer=keras.optimizers.SGD(), loss="categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(train, validation_data=val, epochs=epochs, verbose=0)
    return float(history.history["val_accuracy"][-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archive", help="dataset.zip (default: the generated sample, 40 images per class)")
    parser.add_argument("--weights", default="none", help="imagenet, none, or a weights file (both recipes start from it)")
    parser.add_argument("--image-size", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=42)
    options = parser.parse_args()

    from tuneflow.fetch.weights import resolve_weights
    from tuneflow.dataset.prepare import prepare_dataset
    from tuneflow.config import DataSettings, TrainingSettings
    from tuneflow.dataset.sample import write_sample_dataset

    work = Path(tempfile.mkdtemp(prefix="tuneflow-compare-"))
    archive = Path(options.archive) if options.archive else write_sample_dataset(work / "dataset.zip", 40, 96)
    dataset = prepare_dataset(archive, work / "dataset", DataSettings(), options.seed)
    weights_path = resolve_weights(options.weights if options.weights in {"imagenet", "none"} else str(Path(options.weights).resolve()))
    print(f"data: {archive} -> {sum(dataset.counts['train'].values())} train / {sum(dataset.counts['val'].values())} "
          f"val images, {len(dataset.classes)} classes; weights: {weights_path or 'random initialisation'}; "
          f"{options.image_size} px; {options.epochs} epochs each")

    started = time.perf_counter()
    notebook_accuracy = notebook_recipe(dataset, options.image_size, weights_path, options.epochs, options.seed)
    notebook_seconds = time.perf_counter() - started

    from tuneflow.training.fine_tune import train_classifier

    head_epochs = max(1, options.epochs // 2) if weights_path else options.epochs
    settings = TrainingSettings(
        weights="none" if weights_path is None else str(weights_path),
        image_size=options.image_size,
        batch_size=16,
        epochs=head_epochs,
        fine_tune_epochs=options.epochs - head_epochs,
    )
    started = time.perf_counter()
    trained = train_classifier(dataset, settings, weights_path, options.seed, work / "ours")
    ours_seconds = time.perf_counter() - started
    import pandas as pd

    ours_accuracy = float(pd.read_csv(trained.history_path)["val_accuracy"].iloc[-1])
    print(f"\n{'recipe':34}{'val accuracy':>14}{'seconds':>10}")
    print(f"{'notebook (1/255, Flatten, SGD)':34}{notebook_accuracy:>14.3f}{notebook_seconds:>10.0f}")
    print(f"{'tuneflow':34}{ours_accuracy:>14.3f}{ours_seconds:>10.0f}")


if __name__ == "__main__":
    main()
