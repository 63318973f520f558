"""`corral <command>`: parses arguments and wires library objects, nothing more."""
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
