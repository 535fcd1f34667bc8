"""Scoring a model on photos: predictions, every metric computed from them, and the paired comparison of two models."""
