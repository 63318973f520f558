"""corral as a local OpenAI-compatible fine-tuning service (`corral serve`, docs/serve.md):
files, fine-tuning jobs (supervised, dpo), their events and checkpoints, and the fine-tuned
models, on the routes the official `openai` client calls. It sits beside `cli/` and calls
the library (`corral.api`) as the CLI does; state is durable in ROOT/serve.db (SQLite, WAL),
jobs run in worker processes through the method contract, each in the run store
(ROOT/runs/<job id>).

    from corral.serve.app import create_app
    from corral.serve.server import ServeOptions, serve
"""
