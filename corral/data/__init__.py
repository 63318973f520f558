"""Data: reading and validating user files into records, rendering them to tokens, batching."""
