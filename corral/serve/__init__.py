"""corral as a local OpenAI-compatible fine-tuning service (`corral serve`, docs/serve.md):
files, fine-tuning jobs (supervised, dpo) with pause and resume, their events and
checkpoints, the fine-tuned models, and chat completions with them, on the routes the
official `openai` client calls. It sits beside `cli/` and calls the library (`corral.api`)
as the CLI does; state is durable in ROOT/serve.db (SQLite, WAL), jobs run in worker
processes through the method contract, each in the run store (ROOT/runs/<job id>); chat
models load lazily into a pool (pool.py) that batches requests and shares a loaded base
among its LoRA adapters (adapters.py). The runs dashboard (dashboard/) is mounted at `/`.

    from corral.serve.app import create_app
    from corral.serve.server import ServeOptions, serve
"""
