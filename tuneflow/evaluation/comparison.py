"""Two models scored on the same photos: the paired table, McNemar's exact test and an interval for the difference.

Both models predicted each photo, so the question is not "is 0.81 > 0.80" but how often they disagree and which
way: the photos only the new model got right against those only the model in use got right. McNemar's exact test
asks whether that split could be a coin toss; the Agresti-Min interval (a Wald interval on the table with half a
photo added to each cell, Biometrics 2005) bounds the accuracy difference and keeps close to its 95 % coverage on
the few dozen photos per class a retraining compares. Pure functions of the two prediction tables.
"""

from __future__ import annotations

import math

import pandas as pd
from pydantic import BaseModel, Field

from tuneflow.formatting import points

CONFIDENCE = 0.95
Z_95 = 1.959963984540054  # the standard normal's 97.5th percentile


class PairedComparison(BaseModel):
    """The new model and the model in use on the same photos, photo by photo."""

    compared: int = Field(description="Validation photos both models were scored on.")
    left_out: int = Field(0, description="Validation photos of the new model not used in the comparison.")
    left_out_reason: str = Field("", description="Why they were left out.")
    both_right: int
    only_new_right: int
    only_old_right: int
    both_wrong: int
    new_accuracy: float = Field(description="The new model's accuracy on the compared photos.")
    old_accuracy: float = Field(description="The model in use's accuracy on the compared photos.")
    mcnemar_p: float = Field(description="Two-sided exact McNemar p-value: 1 when the models never disagree.")
    difference_low: float = Field(description="95 % interval for new minus old accuracy: lower end.")
    difference_high: float = Field(description="95 % interval for new minus old accuracy: upper end.")

    @property
    def difference(self) -> float:
        return self.new_accuracy - self.old_accuracy

    def significant(self, level: float) -> bool:
        """The new model is right more often than the model in use, beyond chance at this level."""
        return self.only_new_right > self.only_old_right and self.mcnemar_p < level

    def describe(self) -> str:
        """One sentence with every number the verdict rests on."""
        return (
            f"paired on {self.compared} photos: both right {self.both_right}, only the new model "
            f"{self.only_new_right}, only the model in use {self.only_old_right}, both wrong {self.both_wrong}; "
            f"McNemar exact p = {self.mcnemar_p:.3g}; difference {points(self.difference)} "
            f"(95 % interval {self.difference_low * 100:+.1f} to {self.difference_high * 100:+.1f})"
        )


def mcnemar_exact_p(only_new_right: int, only_old_right: int) -> float:
    """Two-sided exact McNemar test: under "neither model is better", each disagreement is a fair coin."""
    disagreements = only_new_right + only_old_right
    if disagreements == 0:
        return 1.0
    tail = sum(math.comb(disagreements, k) for k in range(min(only_new_right, only_old_right) + 1))
    return min(1.0, 2 * tail / 2**disagreements)


def difference_interval(
    both_right: int, only_new_right: int, only_old_right: int, both_wrong: int, z: float = Z_95
) -> tuple[float, float]:
    """Agresti-Min interval for the paired accuracy difference (new minus old), clipped to [-1, 1]."""
    n = both_right + only_new_right + only_old_right + both_wrong + 2  # half a photo added to each of 4 cells
    new_only, old_only = only_new_right + 0.5, only_old_right + 0.5
    centre = (new_only - old_only) / n
    spread = z * math.sqrt(max(0.0, (new_only + old_only) - (new_only - old_only) ** 2 / n)) / n
    return max(-1.0, centre - spread), min(1.0, centre + spread)


def compare_paired(
    new: pd.DataFrame, old: pd.DataFrame, left_out: int = 0, left_out_reason: str = ""
) -> PairedComparison:
    """Compare two prediction tables (columns path and correct) on the photos they share, matched by path."""
    paired = new[["path", "correct"]].merge(old[["path", "correct"]], on="path", suffixes=("_new", "_old"))
    if len(paired) != len(old):
        missing = sorted(set(old["path"]) - set(paired["path"]))[:5]
        raise ValueError(f"the model in use was scored on photos the new model was not: {missing}")
    new_right, old_right = paired["correct_new"].astype(bool), paired["correct_old"].astype(bool)
    cells = {
        "both_right": int((new_right & old_right).sum()),
        "only_new_right": int((new_right & ~old_right).sum()),
        "only_old_right": int((~new_right & old_right).sum()),
        "both_wrong": int((~new_right & ~old_right).sum()),
    }
    compared = len(paired)
    low, high = difference_interval(**cells)
    return PairedComparison(
        compared=compared,
        left_out=left_out,
        left_out_reason=left_out_reason,
        **cells,
        new_accuracy=float(new_right.mean()) if compared else 0.0,
        old_accuracy=float(old_right.mean()) if compared else 0.0,
        mcnemar_p=mcnemar_exact_p(cells["only_new_right"], cells["only_old_right"]),
        difference_low=low,
        difference_high=high,
    )
