"""How long a training may take before it counts as hung: from the dataset's size, then from its own measured speed.

A training that hangs but stays alive (a stuck data pipeline, a wedged GPU driver) keeps its flow run's heartbeats
going, so nothing else stops it. Until its first epoch ends the limit is the startup allowance plus the train
images at the slowest speed still counted as progress; once an epoch of a phase is measured, the limit becomes the
time spent so far plus `timeout_factor` times what the remaining epochs take at that speed (a fine-tune epoch,
which trains all of ResNet50 and not only the head, counted as FINE_TUNE_EPOCH_COST head epochs until one is
measured), plus an allowance to save the model. `timeout_minutes`, when set, caps it all. Plain Python: the
supervisor (tuneflow.training.process) feeds it the training process's events.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tuneflow.config import TrainingSettings
from tuneflow.events import EpochFinished, PlannedPhase, ReceivedEvent, TrainingStarted

# A fine-tune epoch backpropagates through all of ResNet50, a head epoch through one dense layer: several times
# slower. A guess only until the first fine-tune epoch is measured.
FINE_TUNE_EPOCH_COST = 4.0
# Saving the model and its manifest after the last epoch: seconds, minutes on a slow network disk.
FINISH_ALLOWANCE_S = 600.0


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


@dataclass
class TrainingTimeLimit:
    """The training's time limit, in seconds from its start, as the events of its process reveal its speed."""

    settings: TrainingSettings
    train_images: int
    limit_s: float = 0.0
    measured_phases: set[str] = field(default_factory=set)
    phases: list[PlannedPhase] = field(default_factory=list)  # from the TrainingStarted event

    def __post_init__(self) -> None:
        self.limit_s = self._capped(self.first_epoch_limit_s())

    def first_epoch_limit_s(self) -> float:
        return self.settings.startup_minutes * 60 + self.train_images / self.settings.min_images_per_second

    def _capped(self, seconds: float) -> float:
        cap = self.settings.timeout_minutes * 60 if self.settings.timeout_minutes else None
        return min(seconds, cap) if cap else seconds

    def describe_start(self) -> str:
        cap = f"; never more than timeout_minutes={self.settings.timeout_minutes:g}" if self.settings.timeout_minutes else ""
        return (
            f"training time limit: the first epoch must end within {_duration(self.limit_s)} "
            f"(startup_minutes={self.settings.startup_minutes:g} + {self.train_images} train images at "
            f"min_images_per_second={self.settings.min_images_per_second:g}); after it, "
            f"timeout_factor={self.settings.timeout_factor:g} x what the remaining epochs take at the measured "
            f"speed{cap}"
        )

    def observe(self, event: ReceivedEvent, elapsed_s: float) -> str | None:
        """Take in one event of the training process; a log line when the limit changed, else None."""
        if isinstance(event, TrainingStarted):
            self.phases = event.phases
            return None
        if not isinstance(event, EpochFinished) or event.phase in self.measured_phases:
            return None
        self.measured_phases.add(event.phase)
        epoch_s = event.seconds
        remaining_s = sum(self._remaining_epochs_cost(event.epoch, event.phase, event.total_epochs)) * epoch_s
        self.limit_s = self._capped(elapsed_s + self.settings.timeout_factor * remaining_s + FINISH_ALLOWANCE_S)
        speed = self.train_images / epoch_s if epoch_s else float("inf")
        return (
            f"training time limit: {_duration(self.limit_s)} from its start: the first {event.phase} epoch took "
            f"{epoch_s:.1f} s ({speed:.1f} images/s), the remaining epochs should take {_duration(remaining_s)}; "
            f"x{self.settings.timeout_factor:g} (training.timeout_factor) + {_duration(FINISH_ALLOWANCE_S)} to save"
        )

    def _remaining_epochs_cost(self, epochs_done: int, measured_phase: str, total_epochs: int):
        """Each remaining epoch in units of the measured epoch: 1 in its phase, the fine-tune cost after a head one."""
        if not self.phases:  # a process that did not say its phases: every epoch like the measured one
            yield total_epochs - epochs_done
        for phase in self.phases:
            remaining = phase.first_epoch + phase.epochs - max(epochs_done, phase.first_epoch)
            if remaining <= 0:
                continue
            slower = phase.name == "fine-tune" and measured_phase == "head"
            yield remaining * (FINE_TUNE_EPOCH_COST if slower else 1.0)

    def exceeded_message(self, pid: int) -> str:
        return (
            f"training exceeded its time limit of {_duration(self.limit_s)}; process {pid} "
            "was stopped as hung. If it was only slow, raise training.timeout_factor (or min_images_per_second / "
            "startup_minutes before the first epoch, timeout_minutes for the cap)"
        )
