"""RunStore: the only writer of run directories; sinks for metrics."""
