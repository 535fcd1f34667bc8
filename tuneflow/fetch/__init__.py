"""Getting the inputs of a run: the dataset archive (a local zip or a Drive file) and the starting weights."""
