"""Run folders, and what stays on disk as runs pile up."""
