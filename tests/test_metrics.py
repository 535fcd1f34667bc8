"""Metrics from a hand-made predictions table whose answers were worked out by hand."""

from __future__ import annotations

import pandas as pd
import pytest

from tuneflow.evaluation.metrics import compute_metrics, read_predictions
from tuneflow.evaluation.metrics import predictions_table

CLASSES = ["apple_pie", "pizza", "sashimi", "tiramisu"]
# (true class, probabilities in CLASSES order). sashimi is never predicted; tiramisu never present, predicted once.
ROWS = [
    ("apple_pie", (0.92, 0.04, 0.02, 0.02)),  # right
    ("apple_pie", (0.64, 0.26, 0.05, 0.05)),  # right
    ("apple_pie", (0.32, 0.58, 0.05, 0.05)),  # -> pizza, truth ranked 2nd
    ("pizza", (0.09, 0.81, 0.05, 0.05)),  # right
    ("pizza", (0.17, 0.73, 0.05, 0.05)),  # right
    ("pizza", (0.05, 0.33, 0.10, 0.52)),  # -> tiramisu, truth 2nd
    ("sashimi", (0.47, 0.13, 0.30, 0.10)),  # -> apple_pie, truth 2nd
    ("sashimi", (0.11, 0.44, 0.05, 0.40)),  # -> pizza, truth last
]


def hand_made_table() -> pd.DataFrame:
    import numpy as np

    return predictions_table([f"val/{true}/{i}.jpg" for i, (true, _) in enumerate(ROWS)],
                             np.array([p for _, p in ROWS]), CLASSES, [true for true, _ in ROWS])


@pytest.fixture(scope="module")
def metrics():
    return compute_metrics(hand_made_table(), CLASSES)


def test_table_has_the_predicted_class_and_top_k_columns():
    table = hand_made_table()
    assert list(table["predicted_class"]) == ["apple_pie", "apple_pie", "pizza", "pizza", "pizza", "tiramisu",
                                             "apple_pie", "pizza"]
    assert list(table.loc[7, ["top1_class", "top2_class", "top3_class", "top4_class"]]) == [
        "pizza", "tiramisu", "apple_pie", "sashimi"]
    assert table.loc[7, "top2_probability"] == pytest.approx(0.40)
    assert "top5_class" not in table  # only 4 classes


def test_a_table_of_101_classes_is_built_without_pandas_fragmentation_warnings():
    """Food-101's 101 p_<class> columns added one by one made pandas warn "DataFrame is highly fragmented" at every
    evaluation (and copy the frame each time); the table is built from all its columns at once."""
    import warnings

    import numpy as np

    classes = [f"class_{index:03d}" for index in range(101)]
    probabilities = np.random.default_rng(0).dirichlet(np.ones(101), size=40).astype("float32")
    truth = [classes[index % 101] for index in range(40)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = predictions_table([f"val/{name}/{i}.jpg" for i, name in enumerate(truth)], probabilities, classes,
                                  truth)
        metrics = compute_metrics(table, classes)
    assert list(table.columns[:5]) == ["path", "true_class", "predicted_class", "confidence", "correct"]
    assert table.shape == (40, 5 + 2 * 5 + 101)
    assert metrics.num_correct == int((probabilities.argmax(axis=1) == np.arange(40) % 101).sum())


def test_accuracy_and_top_k(metrics):
    assert (metrics.accuracy, metrics.num_correct, metrics.num_images) == (0.5, 4, 8)
    assert metrics.top_k_accuracy == {1: 0.5, 2: 0.875, 3: 0.875, 4: 1.0}


def test_confusion_matrix_rows_true_columns_predicted(metrics):
    assert metrics.confusion == [[2, 1, 0, 0], [0, 2, 0, 1], [1, 1, 0, 0], [0, 0, 0, 0]]


def test_per_class_including_a_class_never_predicted_and_one_never_present(metrics):
    apple, pizza, sashimi, tiramisu = (metrics.per_class[name] for name in CLASSES)
    assert (apple.precision, apple.recall, apple.f1, apple.support) == pytest.approx((2 / 3, 2 / 3, 2 / 3, 3))
    assert (pizza.precision, pizza.recall, pizza.f1, pizza.support) == pytest.approx((1 / 2, 2 / 3, 4 / 7, 3))
    # never predicted: precision undefined, recall and F1 0
    assert sashimi.precision is None and (sashimi.recall, sashimi.f1, sashimi.support) == (0.0, 0.0, 2)
    # never present but predicted once: precision 0, recall and F1 undefined
    assert tiramisu.precision == 0.0 and tiramisu.recall is None and tiramisu.f1 is None
    assert (tiramisu.support, tiramisu.predicted) == (0, 1)


def test_macro_over_present_classes_and_weighted_by_support(metrics):
    assert metrics.macro.model_dump() == pytest.approx({"precision": 7 / 18, "recall": 4 / 9, "f1": 26 / 63})
    assert metrics.weighted.model_dump() == pytest.approx({"precision": 7 / 16, "recall": 1 / 2, "f1": 13 / 28})


def test_most_confused_pairs_biggest_share_first(metrics):
    pairs = [(p.true_class, p.predicted_class, p.count) for p in metrics.most_confused]
    assert pairs == [("sashimi", "apple_pie", 1), ("sashimi", "pizza", 1), ("apple_pie", "pizza", 1),
                     ("pizza", "tiramisu", 1)]
    assert metrics.most_confused[0].share_of_class == 0.5


def test_calibration_bins_and_expected_error(metrics):
    calibration = metrics.calibration
    assert calibration.mean_confidence == pytest.approx(5.11 / 8)
    assert calibration.accuracy == 0.5
    filled = [(b.lower, b.count, b.mean_confidence, b.accuracy) for b in calibration.bins if b.count]
    expected = [(0.4, 2, 0.455, 0.0), (0.5, 2, 0.55, 0.0), (0.6, 1, 0.64, 1.0),
                (0.7, 1, 0.73, 1.0), (0.8, 1, 0.81, 1.0), (0.9, 1, 0.92, 1.0)]
    assert [pytest.approx(row) for row in expected] == filled
    assert calibration.expected_calibration_error == pytest.approx(2.91 / 8)
    assert len(calibration.bins) == 10 and sum(b.count for b in calibration.bins) == 8


def test_metrics_survive_the_round_trip_through_csv(tmp_path, metrics):
    path = tmp_path / "predictions.csv"
    hand_made_table().to_csv(path, index=False)
    assert compute_metrics(read_predictions(path), CLASSES) == metrics


def test_class_names_that_look_like_numbers_stay_text(tmp_path):
    table = hand_made_table().replace({"apple_pie": "1", "pizza": "nan"})
    table = table.rename(columns={"p_apple_pie": "p_1", "p_pizza": "p_nan"})
    path = tmp_path / "predictions.csv"
    table.to_csv(path, index=False)
    classes = ["1", "nan", "sashimi", "tiramisu"]
    assert compute_metrics(read_predictions(path), classes).per_class["1"].support == 3


def test_a_class_the_model_does_not_know_is_named():
    with pytest.raises(ValueError, match=r"true_class holds \['tiramisu'\], which are not among the model's classes"):
        compute_metrics(hand_made_table().query("true_class != 'tiramisu'").assign(
            true_class=lambda t: t["true_class"].replace("sashimi", "tiramisu")), ["apple_pie", "pizza", "sashimi"])


def test_missing_probability_column_is_named():
    with pytest.raises(ValueError, match=r"lacks the columns \['p_sashimi'\]"):
        compute_metrics(hand_made_table().drop(columns="p_sashimi"), CLASSES)


def test_findings_name_the_failure_patterns(metrics):
    from tuneflow.report.html import findings

    notes = findings(metrics)
    assert "Never predicted: sashimi (1 of 4 classes)." in notes
    assert "No validation image of tiramisu: nothing is known about how well it is recognised." in notes
    assert not any("takes" in note for note in notes)  # pizza: 4 of 8 predictions is not more than half


def test_a_model_answering_one_class_is_called_out():
    from tuneflow.report.html import findings

    table = hand_made_table()
    collapsed = compute_metrics(table.assign(predicted_class="pizza"), CLASSES)
    assert any(note.startswith("pizza takes 100% of all predictions but is 38% of the images") for note in findings(collapsed))
