"""One module per method family: its config and one builder; the shared runner."""
