"""Benchmark (not a test): the classifier's training step on synthetic pixels, under whichever Keras backend is
installed, so a GPU machine with JAX or PyTorch and no TensorFlow can still measure the model's compute rate.

    KERAS_BACKEND=jax python bench/model_step.py [--image-size 224] [--batches 64,128,256]
        [--precisions float32,mixed_float16,mixed_bfloat16] [--xla off,on] [--steps 20] [--trainable all|head]

The model is tuneflow.training.model.build_classifier (keras and numpy only, the flip-and-zoom augmentation
included), timed with train_on_batch after one call that traces and compiles. "XLA on" is compile(jit_compile=
True): XLA under TensorFlow and JAX, torch.compile under PyTorch; each row prints what the compiled model reports
(`model.jit_compile`), not what was asked for. Beside it, torchvision's ResNet50 (float32, and bfloat16 under
autocast) is the anchor when torch and torchvision import; without them the anchor is skipped with a note.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tuneflow.training.model import build_classifier  # noqa: E402

CLASSES = 101  # Food-101's head


def synthetic_batch(batch: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (batch, size, size, 3)).astype("float32")
    return pixels, np.eye(CLASSES, dtype="float32")[rng.integers(0, CLASSES, batch)]


def keras_step_rate(size: int, batch: int, precision: str, xla: bool, steps: int, trainable: str) -> tuple[float, float, bool]:
    """(images/s, seconds of the first step, XLA as the compiled model reports it)."""
    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy(precision)
    try:
        model, base = build_classifier(CLASSES, size, None, 0.2, 0)
        base.trainable = trainable == "all"
        model.compile(optimizer="adam", loss="categorical_crossentropy", jit_compile=xla)
        pixels, labels = synthetic_batch(batch, size)
        started = time.perf_counter()
        model.train_on_batch(pixels, labels)
        first = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(pixels, labels)
        return steps * batch / (time.perf_counter() - started), first, bool(model.jit_compile)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def torchvision_step_rate(size: int, batch: int, bfloat16: bool, steps: int) -> float:
    import torch
    import torchvision

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = torchvision.models.resnet50(weights=None, num_classes=CLASSES).to(device).train()
    optimizer = torch.optim.Adam(model.parameters())
    pixels = torch.rand(batch, 3, size, size, device=device)
    labels = torch.randint(0, CLASSES, (batch,), device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bfloat16):
            loss = torch.nn.functional.cross_entropy(model(pixels), labels)
        loss.backward()
        optimizer.step()

    step()
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batches", default="64,128,256")
    parser.add_argument("--precisions", default="float32,mixed_float16,mixed_bfloat16")
    parser.add_argument("--xla", default="off,on")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--trainable", choices=("all", "head"), default="all")
    options = parser.parse_args()
    batches = [int(b) for b in options.batches.split(",")]
    precisions = options.precisions.split(",")
    xla_choices = [choice == "on" for choice in options.xla.split(",")]

    print(f"Keras {keras.__version__}, backend {keras.backend.backend()}; classifier train step at "
          f"{options.image_size} px, {options.trainable} trainable, {options.steps} timed steps (images/s):")
    baseline = None
    for batch in batches:
        for precision in precisions:
            for xla in xla_choices:
                rate, first, applied = keras_step_rate(options.image_size, batch, precision, xla, options.steps,
                                                       options.trainable)
                baseline = baseline or rate
                asked = "on" if xla else "off"
                print(f"  batch {batch:4d}  {precision:15s} XLA asked {asked:3s} applied {'on' if applied else 'off':3s}"
                      f"  {rate:9.1f}   {rate / baseline:5.2f}x the first row   (first step {first:.1f} s)")
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError as error:
        print(f"torchvision's ResNet50 anchor skipped: {error} (pip install torch torchvision to run it)")
        return
    print(f"torchvision ResNet50 (the anchor), {options.image_size} px, eager:")
    for batch in batches:
        for bfloat16 in (False, True):
            rate = torchvision_step_rate(options.image_size, batch, bfloat16, options.steps)
            print(f"  batch {batch:4d}  {'bfloat16 autocast' if bfloat16 else 'float32':17s} {rate:9.1f}   "
                  f"{rate / baseline:5.2f}x the first Keras row")


if __name__ == "__main__":
    main()
