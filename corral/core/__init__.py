"""Lowest layer: errors, config machinery and sections, records, the registry, atomic io."""
