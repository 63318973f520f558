"""Models: resolution (hub id | dir | .gguf | embedded), the Policy, heads, attention."""
