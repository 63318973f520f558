"""Data made by models: preference pairs from graded samples (more rungs to come)."""
