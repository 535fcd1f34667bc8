"""Training the classifier: the model, the recipe's phases, devices and precision, checkpoints, the training process."""
