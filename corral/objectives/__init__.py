"""Pure losses and the objectives built on them: (policy, batch) -> (loss, metrics)."""
