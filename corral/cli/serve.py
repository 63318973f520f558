"""`corral serve`: parse the flags into ServeOptions and run the service (docs/serve.md)."""
from __future__ import annotations

from corral.cli.options import options


def cmd_serve(args) -> None:
    from corral.serve.server import ServeOptions, serve

    serve(options(ServeOptions, args))


def register(subparsers) -> None:
    p = subparsers.add_parser("serve", help="an OpenAI-compatible fine-tuning service (files, "
                              "jobs, models) on this machine")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on; beyond "
                   "loopback an API key is required")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--root", default="serve", help="folder of the service's database, files "
                   "and runs (ROOT/runs/<job id>)")
    p.add_argument("--api-keys", default=None, metavar="FILE", help="keys, one a line; "
                   "CORRAL_API_KEYS adds comma-separated keys")
    p.add_argument("--workers", type=int, default=1, help="jobs trained at once")
    p.add_argument("--save-every", type=int, default=50, help="steps between checkpoints "
                   "(a restarted job resumes from the last one)")
    p.add_argument("--max-upload-mb", type=int, default=512, help="largest upload")
    p.add_argument("--model", action="append", default=[], metavar="NAME=MODEL",
                   help="a name jobs may use as `model` for a corral model name or path")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a corral config override applied to every job (model.device=cuda)")
    p.add_argument("--max-models", type=int, default=2, help="chat models kept loaded; "
                   "the least recently used is evicted first")
    p.add_argument("--memory-gb", type=float, default=None, help="keep the loaded chat "
                   "models' parameters under this many GiB (evicting least recently used)")
    p.set_defaults(func=cmd_serve)
