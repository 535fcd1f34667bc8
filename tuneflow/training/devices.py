"""Where training runs and in which precision: the distribution strategy (one device, several GPUs, several
machines under TF_CONFIG) and the mixed-precision policy, chosen before TensorFlow touches a device."""

from __future__ import annotations

import json
import os

import keras
import tensorflow as tf
from pydantic import BaseModel

from tuneflow.config import TrainingSettings
from tuneflow.events import Emit, WaitingForWorkers


class DeviceSetup(BaseModel):
    devices: list[str]
    replicas: int
    precision: str
    is_chief: bool
    worker_index: int
    workers: int  # machines training together (MultiWorkerMirroredStrategy when > 1)


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


def choose_precision(requested: str, compute_capabilities: list[tuple[int, int]]) -> str:
    """The Keras precision policy to train in: `requested` itself, or for "auto" the best one for GPUs of these
    compute capabilities (an empty list: training runs on the CPU)."""
    if requested != "auto":
        return requested
    # Tensor cores (Volta, 7.0, and newer) make float16 fast; on CPUs and older GPUs it only costs accuracy.
    return "mixed_float16" if compute_capabilities and min(compute_capabilities) >= (7, 0) else "float32"


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
        devices=devices, replicas=strategy.num_replicas_in_sync, precision=precision, is_chief=chief,
        worker_index=index, workers=cluster_size(tf_config),
    )
