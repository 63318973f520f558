"""THE training loop, its batch sources (dataset, rollouts) and advantage estimators."""
