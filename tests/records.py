"""Records the report and promotion tests need without running the steps that make them, and tiny training knobs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tuneflow.config import TrainingSettings
from tuneflow.evaluation.metrics import predictions_table
from tuneflow.records import TrainedModel

# Training settings small enough for a test on a 2-core CPU: 32-px images, a constant learning rate.
TINY_TRAINING_KNOBS = dict(image_size=32, batch_size=8, lr_schedule="constant")


def head_only_training(weights_file: Path, **changes) -> TrainingSettings:
    """Tiny training from a weights file with no fine-tune phase: only the new head trains, on the frozen base.

    For tests of what happens around training (resuming, processes, machines, cancelling), not of what trains:
    the first step traces in ~7 s at 32 px on 2 cores, against 24-32 s with all of ResNet50 trainable (as
    weights="none" trains it; `make demo` and the field check train that way end to end).
    """
    return TrainingSettings(weights=str(weights_file), fine_tune_epochs=0, **{**TINY_TRAINING_KNOBS, **changes})


def training_record(**values):
    """A TrainedModel for tests that need one without training: the given values, neutral ones for the rest.

    Only fields TrainedModel has are passed, so this keeps working as training records more (devices, precision).
    """
    neutral = {"epochs_run": 1, "train_images": 1, "seconds": 1.0, "images_per_second": 1.0,
               "train_images_per_second": 1.0, "resumed_from_epoch": 0, "devices": ["CPU:0"], "replicas": 1,
               "precision": "float32"}
    return TrainedModel(**{k: v for k, v in {**neutral, **values}.items() if k in TrainedModel.model_fields})


# Food-101's classes, as its archive names the folders: real names, real lengths, for figures at 101 classes.
FOOD101_CLASSES = """apple_pie baby_back_ribs baklava beef_carpaccio beef_tartare beet_salad beignets bibimbap bread_pudding
breakfast_burrito bruschetta caesar_salad cannoli caprese_salad carrot_cake ceviche cheese_plate cheesecake chicken_curry
chicken_quesadilla chicken_wings chocolate_cake chocolate_mousse churros clam_chowder club_sandwich crab_cakes creme_brulee
croque_madame cup_cakes deviled_eggs donuts dumplings edamame eggs_benedict escargots falafel filet_mignon fish_and_chips
foie_gras french_fries french_onion_soup french_toast fried_calamari fried_rice frozen_yogurt garlic_bread gnocchi
greek_salad grilled_cheese_sandwich grilled_salmon guacamole gyoza hamburger hot_and_sour_soup hot_dog huevos_rancheros
hummus ice_cream lasagna lobster_bisque lobster_roll_sandwich macaroni_and_cheese macarons miso_soup mussels nachos
omelette onion_rings oysters pad_thai paella pancakes panna_cotta peking_duck pho pizza pork_chop poutine prime_rib
pulled_pork_sandwich ramen ravioli red_velvet_cake risotto samosa sashimi scallops seaweed_salad shrimp_and_grits
spaghetti_bolognese spaghetti_carbonara spring_rolls steak strawberry_shortcake sushi tacos takoyaki tiramisu
tuna_tartare waffles""".split()


def made_up_predictions(paths: list[str], labels: np.ndarray, classes: list[str], skill: float | np.ndarray,
                        seed: int, look_alikes: np.ndarray | None = None) -> pd.DataFrame:
    """predictions.csv for the given photos (paths, true label indices) without a model: random logits, the true
    class's raised by `skill` (one number, or one per class). With `look_alikes` (a class index per class), each
    class's look-alike is raised by half its skill, so mistakes gather in a few pairs as in a real run."""
    rng = np.random.default_rng(seed)
    rows = np.arange(len(paths))
    skill = np.broadcast_to(np.asarray(skill, dtype=float), (len(classes),))
    logits = rng.normal(size=(len(paths), len(classes)))
    logits[rows, labels] += skill[labels]
    if look_alikes is not None:
        logits[rows, look_alikes[labels]] += skill[labels] / 2
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    table = predictions_table(list(paths), probabilities, classes).copy()  # in one block: insert() warns otherwise
    table.insert(1, "true_class", [classes[i] for i in labels])
    table.insert(4, "correct", table["true_class"] == table["predicted_class"])
    return table


def synthetic_predictions(classes: list[str], per_class: int, seed: int) -> pd.DataFrame:
    """predictions.csv for `per_class` made-up photos of each class: each class recognised with its own skill (so
    F1 spreads from poor to near perfect) and mistaken mostly for one look-alike."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(classes)), per_class)
    paths = [f"val/{classes[label]}/{i % per_class}.jpg" for i, label in enumerate(labels)]
    return made_up_predictions(paths, labels, classes, rng.uniform(0.5, 5.0, len(classes)), seed,
                               look_alikes=rng.permutation(len(classes)))
