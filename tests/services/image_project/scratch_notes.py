"""Excluded by bentofile.yaml (exclude: scratch_*.py): never in the image."""
