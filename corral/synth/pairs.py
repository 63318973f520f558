"""`corral pairs`: preference and KTO rows from graded samples. Each prompt is sampled n times
through a Generator (a local model, a run or an endpoint) in a row-level resumable job
(`synth.sampling.sample_task`: DIR/samples.jsonl, its `.partial` row cache and manifest); the
samples are graded, and a passing one (chosen) is paired with a failing one (rejected).
With a judge as grader: RLAIF.

    result = pairs.run(PairsOptions(model="smollm2-135m-instruct", task="arithmetic", n=4,
                                    out="pairs/"))

DIR/pairs.jsonl and DIR/kto.jsonl each get the standard manifest (`<file>.manifest.json`:
generator, grader, task, counts, and the samples job's manifest as a source), which
`corral lineage` reads; DIR/manifest.json keeps the old summary (stats, files, origin).
"""
from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from corral.core.errors import CorralError
from corral.core.io import atomic_write_text
from corral.data.splits import refuse_sealed_items
from corral.infer.engine import SamplingParams
from corral.store.jobs import manifest_path, write_manifest
from corral.synth.sampling import Teacher, sample_task


@dataclass(frozen=True)
class PairsOptions:
    """`corral pairs`'s options (field names are its flags' dest names)."""
    task: str = ""
    model: str = "smollm2-135m-instruct"
    split: str = "train"
    data: str = ""
    task_grader: str = ""
    grader: str = ""
    n: int = 4
    limit: int = 0
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    threshold: float = 1.0
    seed: int = 0
    out: str = ""
    root: str = "runs"
    batch_size: int = 16
    engine_batch: int = 64
    retry_failed: bool = False


@dataclass
class PairsResult:
    preference: list = field(default_factory=list)  # prompt/chosen/rejected rows
    feedback: list = field(default_factory=list)  # prompt/completion/label rows
    stats: dict = field(default_factory=dict)
    origin: dict = field(default_factory=dict)  # model, grader, task, sampling
    generator: dict = field(default_factory=dict)  # the generator's identity, for manifests
    sources: list = field(default_factory=list)  # the samples job's manifest
    files: dict = field(default_factory=dict)  # pairs, kto, samples, manifest: where written


def run(opts: PairsOptions, log: Callable[[str], None] | None = None) -> PairsResult:
    """`corral pairs`: sample, grade and pair into `opts.out` (default pairs-<task>),
    resumably; returns the rows, counts and the files written."""
    from corral.infer.generators import generator_for
    from corral.synth.commands import sample_grader, task_grader_spec
    from corral.tasks import get_task

    if not opts.task:
        raise CorralError("--task is missing: give gsm8k | arithmetic | ifeval-like | FILE.jsonl")
    _check(opts.n)
    refuse_sealed_items((), opts.split, "preference pairs", "--split")
    task = get_task(opts.task, split=opts.split, data=opts.data, limit=opts.limit,
                    grader=task_grader_spec(opts.task, opts.task_grader, opts.grader),
                    grader_flag="--grader (or --task-grader)")
    refuse_sealed_items(task.items, opts.split, "preference pairs", "--split")
    grader = sample_grader(opts, task)
    generator = generator_for(opts.model, root=opts.root, batch_size=opts.engine_batch,
                              key="--model")
    params = SamplingParams(n=opts.n, temperature=opts.temperature, top_p=opts.top_p,
                            max_new_tokens=opts.max_new_tokens, seed=opts.seed)
    out = opts.out or f"pairs-{Path(task.name).stem}"
    result = sample_pairs(generator, task, f"{out}/samples.jsonl", params, grader=grader,
                          threshold=opts.threshold, model_name=opts.model, split=opts.split,
                          batch_size=opts.batch_size, log=log or (lambda _: None),
                          retry_failed=opts.retry_failed)
    result.files = {**write_pairs(result, out), "samples": f"{out}/samples.jsonl"}
    return result


def _check(n: int) -> None:
    if n < 2:
        raise CorralError(f"-n {n}: pairs need at least 2 samples per prompt")


def sample_pairs(generator, task, samples_path: str, params: SamplingParams, grader=None,
                 threshold: float = 1.0, model_name: str = "", split: str = "",
                 batch_size: int = 16, log=print, retry_failed: bool = False) -> PairsResult:
    """Graded samples of every task prompt (a resumable job into `samples_path`) made into
    rows that say where they came from (model, grader, task, item, sampling). The model sees
    the task's prompt program (system prompt, few-shot turns); the rows' prompt is what it
    saw. grader defaults to the task's."""
    _check(params.n)
    refuse_sealed_items(task.items, split, "preference pairs", "--split")
    grader = grader or task.grader
    teacher = Teacher(task.system_prompt, tuple(map(tuple, task.few_shot)))
    samples = sample_task(generator, task, samples_path, params, grader=grader,
                          teacher=teacher, batch_size=batch_size, threshold=threshold,
                          retry_failed=retry_failed,
                          extra={"recipe": "pairs", "split": split}, log=log)
    origin = {"model": model_name or generator.name,
              "grader": getattr(grader, "name", type(grader).__name__), "task": task.name,
              "split": split, "temperature": params.temperature, "n": params.n,
              "seed": params.seed}
    by_source = {it.source: it for it in task.items}
    result = PairsResult(origin=origin, generator=generator.identity(), sources=[
        json.loads(manifest_path(samples_path).read_text(encoding="utf-8"))])
    n_samples = n_passed = 0
    for row in samples:
        prompt = teacher.conversation(by_source[row["source"]])
        graded = [(s["text"], s.get("score", 0.0), bool(s.get("passed")),
                   s["finish"] != "length") for s in row["samples"]]
        n_samples += len(graded)
        n_passed += sum(g[2] for g in graded)
        pref, feed = _item_rows(prompt, graded, {**origin, "item": row["source"]})
        result.preference += pref
        result.feedback += feed
    result.stats = {"prompts": len(samples), "samples": n_samples,
                    "pass_rate": n_passed / max(1, n_samples),
                    "pairs": len(result.preference), "kto_rows": len(result.feedback),
                    "kto_desirable": sum(r["label"] for r in result.feedback)}
    log("pairs: " + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                              for k, v in result.stats.items()))
    return result


def _assistant(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def _item_rows(prompt, graded, origin: dict):
    """Rows of one prompt. graded: [(text, score, passed, finished)]. A passing sample must
    have finished (not cut at max_new_tokens) to be chosen or desirable; duplicates count
    once."""
    seen, good, bad = set(), [], []
    for text, score, ok, finished in graded:
        if not text.strip() or text in seen:
            continue  # empty content is not a valid message; a repeat adds no information
        seen.add(text)
        if ok:
            if finished:
                good.append((text, score))
        else:
            bad.append((text, score))
    feedback = [{"prompt": prompt, "completion": _assistant(t), "label": label,
                 "provenance": {**origin, "score": v}}
                for label, side in ((True, good), (False, bad)) for t, v in side]
    preference = [{"prompt": prompt, "chosen": _assistant(c), "rejected": _assistant(r),
                   "provenance": {**origin, "chosen_score": cv, "rejected_score": rv}}
                  for (c, cv), (r, rv) in zip(good, bad)]  # each sample in one pair at most
    return preference, feedback


def make_pairs(policy, task, n: int = 4, params: SamplingParams | None = None, grader=None,
               threshold: float = 1.0, model_name: str = "", split: str = "",
               batch_size: int = 32, log=print, samples: str = "") -> PairsResult:
    """Pairs from a loaded policy (the Python form `corral pairs` had): the same resumable
    job as `run`, its samples in `samples` (default: a temporary folder, not kept)."""
    from dataclasses import replace

    from corral.infer.engine import engine_for
    from corral.infer.generators import Generator

    _check(n)
    refuse_sealed_items((), split, "preference pairs", "--split")
    params = replace(params or SamplingParams(temperature=1.0, max_new_tokens=256, seed=0), n=n)
    name = model_name or str(getattr(policy, "source", "")) or "policy"
    generator = Generator.from_engine(engine_for(policy, batch_size=batch_size), name)
    if samples:
        return sample_pairs(generator, task, samples, params, grader, threshold, model_name,
                            split, log=log)
    with tempfile.TemporaryDirectory(prefix="corral-pairs-") as tmp:
        return sample_pairs(generator, task, f"{tmp}/samples.jsonl", params, grader,
                            threshold, model_name, split, log=log)


def write_pairs(result: PairsResult, out_dir) -> dict:
    """Write pairs.jsonl and kto.jsonl (each with its manifest, which lineage reads) and the
    summary manifest.json into out_dir, each atomically; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"pairs": out / "pairs.jsonl", "kto": out / "kto.jsonl"}
    for kind, rows in (("pairs", result.preference), ("kto", result.feedback)):
        atomic_write_text(paths[kind], "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                               for r in rows))
        write_manifest(paths[kind], kind=f"synth-{kind}", generator=result.generator,
                       grader=result.origin.get("grader"), task=result.origin.get("task"),
                       origin=result.origin, counts=result.stats, sources=result.sources)
    manifest = {"stats": result.stats, "files": {k: str(p) for k, p in paths.items()},
                "origin": result.origin}
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return {**{k: str(p) for k, p in paths.items()}, "manifest": str(out / "manifest.json")}


__all__ = ["PairsOptions", "PairsResult", "make_pairs", "run", "sample_pairs", "write_pairs"]
