"""`corral <command>`: parses arguments and wires library objects, nothing more."""
from corral.cli.app import main

__all__ = ["main"]
