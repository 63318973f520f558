"""Evaluation: items -> engine -> grader -> pass@k, maj@k, stderr; comparison tables."""
