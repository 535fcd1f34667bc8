"""Turning a dataset zip into a checked train/val folder tree: scan, split, extract. Plain Python, no Prefect."""
