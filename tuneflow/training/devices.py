"""Where training runs and in which precision: the distribution strategy (one device, several GPUs, several
machines under TF_CONFIG) and the mixed-precision policy, chosen before TensorFlow touches a device."""

from __future__ import annotations

import json
import os
from typing import Literal

import keras
import tensorflow as tf
from pydantic import BaseModel

from tuneflow.config import TrainingSettings
from tuneflow.events import Emit, WaitingForWorkers


class DeviceSetup(BaseModel):
    devices: list[str]
    gpus: int  # GPUs of this machine that train
    replicas: int
    precision: str
    is_chief: bool
    worker_index: int
    workers: int  # machines training together (MultiWorkerMirroredStrategy when > 1)


def choose_precision(requested: str, compute_capabilities: list[tuple[int, int]]) -> str:
    """The Keras dtype policy for `requested` ("auto" or a policy name) on GPUs of these compute capabilities
    (none: a CPU). The oldest GPU decides, since every replica runs the same policy."""
    if requested != "auto":
        return requested
    if not compute_capabilities:
        return "float32"
    oldest = min(tuple(capability) for capability in compute_capabilities)
    # Ampere, Ada and Hopper (8.0+) run bfloat16 at float16's tensor-core rate with float32's range: no loss
    # scaling, no overflow. Volta and Turing (7.x) have float16 tensor cores only; older GPUs and CPUs gain
    # nothing from either (measured on a 2-core CPU: mixed_bfloat16 7x slower than float32).
    if oldest >= (8, 0):
        return "mixed_bfloat16"
    if oldest >= (7, 0):
        return "mixed_float16"
    return "float32"


class JitChoice(BaseModel):
    """Whether to ask Keras to compile the training step with XLA, and why (for the run's log and records)."""

    requested: Literal["auto"] | bool
    wanted: bool
    reason: str
    warning: bool  # the user asked for XLA and will not get it


def choose_jit_compile(requested: Literal["auto"] | bool, gpus: int, across_machines: bool) -> JitChoice:
    """XLA where it pays: on where a GPU trains; off on CPUs, where TensorFlow's oneDNN path is 3.3x faster
    (ResNet50 at 64 px on 2 cores: 42 images/s without, 12.8 with); never across machines, where the custom
    training loop runs its steps as plain tf.functions."""
    if across_machines:
        return JitChoice(requested=requested, wanted=False, warning=requested is True,
                         reason="not applied when training across machines: the custom training loop runs its "
                         "steps as plain tf.functions")
    if requested == "auto":
        if gpus:
            return JitChoice(requested=requested, wanted=True, warning=False, reason="on where a GPU trains")
        return JitChoice(requested=requested, wanted=False, warning=False,
                         reason="off on CPUs, where XLA trains ResNet50 3.3x slower than without")
    return JitChoice(requested=requested, wanted=requested, warning=False,
                     reason="as requested")


def layers_blocking_xla(model: keras.Model) -> list[str]:
    """Names of the layers (nested ones too) that tell Keras they cannot be compiled with XLA."""
    def layers_within(layer: keras.Layer):
        for inner in getattr(layer, "layers", ()):  # ResNet50 is a model inside the model
            yield inner
            yield from layers_within(inner)

    return [f"{layer.name} ({type(layer).__name__})" for layer in layers_within(model)
            if not getattr(layer, "supports_jit", True)]


def applied_jit_compile(model: keras.Model, choice: JitChoice, across_machines: bool) -> tuple[bool, str]:
    """Whether XLA really compiles the training step, read back from the compiled model, and why.

    Keras turns XLA off by itself when a layer does not support it (RandomZoom, a custom layer), warning only on
    stderr: what counts is `model.jit_compile` after compile(), not what was asked for.
    """
    if across_machines or not choice.wanted:
        return False, choice.reason
    if model.jit_compile:
        return True, choice.reason
    blocking = layers_blocking_xla(model)
    return False, (f"Keras compiled without XLA: {', '.join(blocking) or 'a layer of the model'} does not support it"
                   " (set jit_compile=false to silence this, or leave such layers out)")


def read_tf_config() -> dict:
    return json.loads(os.environ.get("TF_CONFIG") or "{}")


def cluster_size(tf_config: dict) -> int:
    """How many machines TF_CONFIG describes (1 without it)."""
    cluster = tf_config.get("cluster", {})
    return max(1, len(cluster.get("worker", [])) + len(cluster.get("chief", [])))


def chief_and_index(tf_config: dict) -> tuple[bool, int]:
    """(is this process the chief?, its worker index) from TF_CONFIG; a single machine is its own chief."""
    task_spec = tf_config.get("task", {})
    kind, index = task_spec.get("type", "worker"), int(task_spec.get("index", 0))
    if "chief" in tf_config.get("cluster", {}):
        return kind == "chief", index
    return kind == "worker" and index == 0, index


def compute_capabilities(gpus: list[tf.config.PhysicalDevice]) -> list[tuple[int, int]]:
    """Each GPU's CUDA compute capability, (0, 0) where TensorFlow reports none (reading it starts no device)."""
    return [tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0)) for gpu in gpus]


def configure_devices(
    settings: TrainingSettings, cpu_replicas: int = 1, emit: Emit = lambda event: None
) -> tuple[tf.distribute.Strategy, DeviceSetup]:
    """Choose the distribution strategy and precision; must run before TensorFlow touches a device.

    TF_CONFIG describing several machines: MultiWorkerMirroredStrategy (over every GPU of each). Otherwise several
    GPUs: MirroredStrategy; else the default strategy. `cpu_replicas` > 1 splits the CPU into logical devices (to
    exercise MirroredStrategy without GPUs).
    """
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        # Memory growth lets a second process (evaluation, a notebook) share the GPU instead of failing to start.
        tf.config.experimental.set_memory_growth(gpu, True)
    tf_config = read_tf_config()
    chief, index = chief_and_index(tf_config)
    if cluster_size(tf_config) > 1:
        # Creating the strategy blocks until every machine of the cluster has connected: say so, or it looks hung.
        emit(WaitingForWorkers(cluster=tf_config["cluster"], task=tf_config.get("task", {})))
        strategy: tf.distribute.Strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif cpu_replicas > 1 and not gpus:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
        strategy = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    elif len(gpus) > 1:
        strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.get_strategy()

    precision = choose_precision(settings.precision, compute_capabilities(gpus))
    keras.mixed_precision.set_global_policy(precision)
    devices = [d.name for d in (tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU"))]
    return strategy, DeviceSetup(
        devices=devices, gpus=len(gpus), replicas=strategy.num_replicas_in_sync, precision=precision, is_chief=chief,
        worker_index=index, workers=cluster_size(tf_config),
    )
