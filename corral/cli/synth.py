"""Old name of `corral/cli/pairs.py` (the `corral pairs` command), kept so `cli/app.py` and
imports of `corral.cli.synth` keep working."""
from corral.cli.pairs import cmd_pairs, register

__all__ = ["cmd_pairs", "register"]
