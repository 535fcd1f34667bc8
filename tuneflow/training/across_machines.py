"""Training across machines (MultiWorkerMirroredStrategy), where Keras 3's fit fails: TensorFlow's custom
training loop, driving the same callbacks fit would."""

from __future__ import annotations

import keras
import tensorflow as tf

from tuneflow.config import TrainingSettings


def agree_on_epochs_done(strategy: tf.distribute.Strategy, epochs_done: int) -> int:
    """The last epoch every machine of the cluster has a checkpoint of (each one keeps its last two)."""
    per_replica = strategy.run(lambda: tf.constant([epochs_done]))
    return int(tf.reduce_min(strategy.gather(per_replica, axis=0)))


def fit_across_machines(
    model: keras.Model,
    strategy: tf.distribute.Strategy,
    train_data: tf.data.Dataset,
    val_data: tf.data.Dataset,
    settings: TrainingSettings,
    steps_per_epoch: int,
    initial_epoch: int,
    epochs: int,
    callback: keras.callbacks.Callback,
) -> None:
    """What model.fit does, for MultiWorkerMirroredStrategy, where Keras 3's fit fails (keras-team/keras#20585).

    TensorFlow's own custom training loop: each replica computes its share of the global-batch loss, the optimizer
    all-reduces the gradients across machines, and loss/accuracy totals are summed across machines. The callback
    gets the calls fit would make, so checkpoints, history and progress work the same on one machine or several.
    Training batches are full and the data repeats (steps_per_epoch per epoch): a replica left with an empty batch
    would feed NaN statistics to BatchNorm.
    """
    optimizer = model.optimizer  # compiled: a LossScaleOptimizer under mixed_float16
    per_image_loss = keras.losses.CategoricalCrossentropy(label_smoothing=settings.label_smoothing, reduction=None)
    variables = model.trainable_variables

    def totals(targets: tf.Tensor, probabilities: tf.Tensor, losses: tf.Tensor) -> tf.Tensor:
        hits = tf.equal(tf.argmax(probabilities, axis=-1), tf.argmax(targets, axis=-1))
        return tf.stack([
            tf.reduce_sum(tf.cast(losses, tf.float32)),
            tf.reduce_sum(tf.cast(hits, tf.float32)),
            tf.cast(tf.shape(targets)[0], tf.float32),
        ])

    def replica_train_step(images: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            probabilities = model(images, training=True)
            losses = per_image_loss(targets, probabilities)
            loss = tf.nn.compute_average_loss(losses, global_batch_size=settings.batch_size)
            scaled_loss = optimizer.scale_loss(loss)
        optimizer.apply(tape.gradient(scaled_loss, variables), variables)
        return totals(targets, probabilities, losses)

    def replica_val_step(images: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
        probabilities = model(images, training=False)
        return totals(targets, probabilities, per_image_loss(targets, probabilities))

    @tf.function
    def train_step(iterator) -> tf.Tensor:
        return strategy.reduce("SUM", strategy.run(replica_train_step, args=next(iterator)), axis=None)

    @tf.function
    def val_step(batch) -> tf.Tensor:
        return strategy.reduce("SUM", strategy.run(replica_val_step, args=batch), axis=None)

    def as_logs(summed: tf.Tensor, prefix: str = "") -> dict[str, float]:
        loss_sum, hits, count = (float(v) for v in summed)
        return {f"{prefix}loss": loss_sum / max(count, 1.0), f"{prefix}accuracy": hits / max(count, 1.0)}

    train_batches = iter(strategy.experimental_distribute_dataset(train_data.repeat()))
    val_batches = strategy.experimental_distribute_dataset(val_data)
    callback.set_model(model)
    callback.on_train_begin()
    for epoch in range(initial_epoch, epochs):
        callback.on_epoch_begin(epoch)
        summed = tf.zeros(3)
        for step in range(steps_per_epoch):
            summed += train_step(train_batches)
            callback.on_train_batch_end(step)
        val_summed = tf.zeros(3)
        for batch in val_batches:  # every machine runs the same number of steps; TensorFlow pads with empty batches
            val_summed += val_step(batch)
        callback.on_epoch_end(epoch, {**as_logs(summed), **as_logs(val_summed, "val_")})
    callback.on_train_end()
