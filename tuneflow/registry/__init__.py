"""Trained models kept and put to use: versions, the promotion rule, the serving folder, exports."""
