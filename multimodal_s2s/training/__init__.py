"""Training: the trainer and its run folder, evaluation on data splits, resuming, data
parallelism. Imports the layers below it, never ``inference``."""
