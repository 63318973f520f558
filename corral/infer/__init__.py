"""Inference: the one generation engine, its backends and KV cache."""
