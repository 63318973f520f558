"""The `corral` command line: each command parses its flags into the options of one `corral.api`
function and prints its result (cli/app.py builds the parser; `corral --help` lists the ladder)."""
import sys


def main(argv=None) -> int:
    """The console entry point: a Ctrl-C while the command's modules import ends quietly too."""
    try:
        from corral.cli.app import main as run

        return run(argv)
    except KeyboardInterrupt:
        print("corral: interrupted", file=sys.stderr)
        return 130


__all__ = ["main"]
