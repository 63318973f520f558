"""Iterated rejection sampling (ReST-EM, Singh et al. 2023; STaR's outer loop): K rounds of
sample → keep what the grader passes → fine-tune → measure dev, stopping when dev stops
improving.

Each round samples from the latest student (round 1: the base model). ReST-EM fine-tunes
from the *base* model every round on that round's data, which keeps errors from compounding
across rounds; `from_last=True` continues from the last student instead (STaR restarts from
the base too, the default here). A round whose dev score does not beat the best so far by
more than `min_gain` ends the loop, and the best round's student is the result.

The three steps are passed in, so `run(opts)` (the command `corral synth rejection --rounds
K`) wires real sampling, training and evaluation and the tests wire arithmetic ones:

    sample(model, round) -> data file      train(data, start_model, round) -> model
    evaluate(model) -> dev score
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from corral.core.errors import CorralError
from corral.core.io import atomic_write_text


@dataclass
class RoundResult:
    round: int
    sampled_from: str
    data: str
    model: str
    dev: float


@dataclass
class RestEM:
    rounds: int
    base: str
    from_last: bool = False
    min_gain: float = 0.0
    history: list = field(default_factory=list)

    def run(self, sample, train, evaluate, log=print, record: str = "") -> list[RoundResult]:
        if self.rounds < 1:
            raise CorralError(f"--rounds {self.rounds}: run at least 1 round")
        best = evaluate(self.base)
        log(f"rest-em: round 0 (base {self.base}) dev {best:.3f}")
        self.history = [RoundResult(0, "", "", self.base, best)]
        student = self.base
        for r in range(1, self.rounds + 1):
            data = sample(student, r)
            start = student if self.from_last else self.base
            model = train(data, start, r)
            dev = evaluate(model)
            self.history.append(RoundResult(r, student, data, model, dev))
            log(f"rest-em: round {r} sampled from {student}, trained from {start}: dev "
                f"{dev:.3f} (best so far {best:.3f})")
            if record:
                self._save(record)
            if dev <= best + self.min_gain:
                log(f"rest-em: dev did not improve by more than {self.min_gain}; stopping "
                    "after this round")
                break
            best, student = dev, model
        return self.history

    def best(self) -> RoundResult:
        return max(self.history, key=lambda h: (h.dev, -h.round))

    def _save(self, path: str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({
            "rounds": [vars(h) for h in self.history], "best": vars(self.best()),
            "from_last": self.from_last, "min_gain": self.min_gain}, indent=2) + "\n")


@dataclass
class RestEMResult:
    """ReST-EM's rounds (round 0: the base model's dev score), the best one, and the record
    file (OUT-stem.rounds.json) they were saved to."""
    rounds: list
    best: RoundResult
    record: str


def _check(opts) -> None:
    if not opts.task or not opts.out:
        raise CorralError("--task and --out are needed: the task to sample and the .jsonl "
                          "path whose stem names each round's data")
    if opts.rounds < 1:
        raise CorralError(f"--rounds {opts.rounds}: run at least 1 round")


def run(opts, log=None) -> RestEMResult:
    """`corral synth rejection --rounds K`: sample from the latest student (a resumable job
    per round, OUT-stem.roundR.jsonl), keep what passes, SFT (runs PREFIX-roundR; a trained
    round is reused on a rerun, a killed one resumes), measure dev; opts is a
    `corral.synth.commands.RejectionOptions` with rounds ≥ 1."""
    from dataclasses import replace

    from corral.core.config import load_config
    from corral.core.sections import SFTConfig
    from corral.eval.evaluate import compare_models
    from corral.infer.engine import SamplingParams
    from corral.infer.generators import generator_for
    from corral.methods.runner import run as run_method
    from corral.methods.sft import METHOD
    from corral.store.runs import run_model_path
    from corral.synth.commands import load_task, recipe_of, sample_grader, sampling_params
    from corral.synth.recipes import synthesize
    from corral.tasks import get_task

    log = log or (lambda _: None)
    _check(opts)
    task = load_task(opts, "rejection")
    grader = sample_grader(opts, task)  # --grader, else the task's own (loaded once)
    recipe, params = recipe_of(opts, "rejection", task), sampling_params(opts)
    dev = get_task(opts.task, split="dev", data=opts.dev_data or opts.data,
                   grader=opts.task_grader, limit=opts.dev_limit, grader_flag="--task-grader")
    greedy = SamplingParams(max_new_tokens=opts.max_new_tokens, temperature=0.0)
    stem, prefix = str(Path(opts.out).with_suffix("")), opts.run_prefix or Path(opts.out).stem

    def sample(model, r):
        out = f"{stem}.round{r}.jsonl"
        generator = generator_for(model, root=opts.root, batch_size=opts.engine_batch,
                                  key="--model")
        synthesize(generator, task, out, params, replace(recipe, round=r), grader=grader,
                   batch_size=opts.batch_size, log=log, retry_failed=opts.retry_failed)
        return out

    def train(data, start, r):
        name = f"{prefix}-round{r}"
        folder = Path(opts.root) / name
        if (folder / "final").is_dir():  # a rerun of a killed loop: this round is trained
            return name
        resume = ["run.resume=true"] if (folder / "checkpoints").is_dir() else []
        cfg = load_config(SFTConfig, None, [f"model.name={start}", f"data.train={data}",
                                            f"run.name={name}", f"run.root={opts.root}",
                                            *opts.train, *resume])
        run_method(METHOD, cfg)
        return name

    def evaluate(model):
        path = run_model_path(model, opts.root)
        return compare_models([path], dev, greedy, (1,))[path]["mean"]

    loop = RestEM(opts.rounds, opts.model, from_last=opts.from_last, min_gain=opts.min_gain)
    record = f"{stem}.rounds.json"
    history = loop.run(sample, train, evaluate, log=log, record=record)
    return RestEMResult(history, loop.best(), record)
