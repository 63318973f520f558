"""`corral curate` as a library call: the command's options (field names are its flags' dest
names, similarity thresholds as the text the flags take: "0.7", "off"), validated first, then
the pipeline (`pipeline.curate_file`) with IFD scores when a score model is given.

    from corral.curate import CurateRunOptions, run
    result = run(CurateRunOptions(file="train.jsonl", out="clean.jsonl",
                                  decontaminate=("gsm8k=../shared/data/gsm8k/test.jsonl",)))
    result.rows_out, result.steps
"""
from __future__ import annotations

from dataclasses import dataclass, field

from corral.core.errors import CorralError
from corral.curate.pipeline import CurateOptions, curate_file


@dataclass(frozen=True)
class CurateRunOptions:
    """`corral curate FILE --out OUT ...`."""
    file: str = ""
    out: str = ""
    exact: bool = True
    near: str = "0.7"  # MinHash Jaccard threshold, or off
    ngram: int = 5
    num_perm: int = 128
    semantic: str = "off"
    decontaminate: tuple = ()
    known_splits: bool = True
    decontam_ngram: int = 13
    decontam_threshold: float = 0.5
    decontam_semantic: str = "off"
    select: int = 0
    select_method: str = "deita"
    tau: float = 0.9
    score_field: str = ""
    score_model: str = ""
    batch_size: int = 8
    seed: int = 0
    report: str = ""


@dataclass
class CurateResult:
    """What `run` wrote: the curated rows, the findings report, the manifest (as written,
    in `manifest`), and each step's summary (step, removed, kept, notes)."""
    out: str
    report: str
    manifest_path: str
    rows_in: int
    rows_out: int
    steps: list = field(default_factory=list)
    manifest: dict = field(default_factory=dict)


def _similarity(flag: str, text) -> float | None:
    """A threshold in (0, 1], or None for off."""
    if text is None or str(text).lower() in ("off", "none", "no"):
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise CorralError(f"{flag} takes a similarity in (0, 1] or 'off', got '{text}'")
    return value


def pipeline_options(opts: CurateRunOptions) -> CurateOptions:
    """The options checked and turned into the pipeline's (thresholds as numbers)."""
    if not opts.file or not opts.out:
        raise CorralError("curate needs FILE and --out: the training rows and the curated "
                          ".jsonl to write")
    if opts.ngram < 1 or opts.decontam_ngram < 1:
        raise CorralError(f"--ngram {opts.ngram} / --decontam-ngram {opts.decontam_ngram}: "
                          "give a whole number of words ≥ 1")
    if not 0 < opts.decontam_threshold <= 1:
        raise CorralError(f"--decontam-threshold {opts.decontam_threshold}: give the share of "
                          "a test item's n-grams in (0, 1] at which a row is dropped")
    if opts.select < 0:
        raise CorralError(f"--select {opts.select}: give the number of rows to keep, ≥ 1")
    if opts.select and opts.select_method == "deita" and not (opts.score_field or
                                                              opts.score_model):
        raise CorralError("--select-method deita ranks rows by score: give --score-field KEY "
                          "or --score-model MODEL (IFD), or use --select-method kcenter|random")
    return CurateOptions(
        exact=opts.exact, near=_similarity("--near", opts.near), ngram=opts.ngram,
        num_perm=opts.num_perm, semantic=_similarity("--semantic", opts.semantic),
        decontaminate=tuple(opts.decontaminate), known_splits=opts.known_splits,
        decontam_ngram=opts.decontam_ngram, decontam_threshold=opts.decontam_threshold,
        decontam_semantic=_similarity("--decontam-semantic", opts.decontam_semantic),
        select=opts.select, select_method=opts.select_method, tau=opts.tau,
        score_field=opts.score_field, seed=opts.seed)


def ifd_scorer(model_name: str, batch_size: int):
    """deita's scores from a causal LM: IFD, with IFD ≥ 1 (the prompt does not help) last,
    as Cherry-LLM discards those rows."""
    from corral.core.sections import ModelConfig
    from corral.curate.quality import ifd_scores
    from corral.model.policy import load_policy
    from corral.store.runs import run_model_path

    def scorer(rows):
        policy = load_policy(ModelConfig(name=run_model_path(model_name)), None,
                             for_training=False, key="--score-model")
        values = ifd_scores(policy.model, policy.tokenizer, rows, batch_size=batch_size)
        return [v if v < 1 else float("-inf") for v in values]  # NaN < 1 is False: last too
    scorer.name = f"ifd:{model_name}"
    return scorer


def run(opts: CurateRunOptions) -> CurateResult:
    """`corral curate`: dedup, decontaminate and select `opts.file` into `opts.out`, with
    a findings report and a manifest."""
    options = pipeline_options(opts)
    scorer = ifd_scorer(opts.score_model, opts.batch_size) if opts.score_model else None
    manifest = curate_file(opts.file, opts.out, options, report_path=opts.report,
                           scorer=scorer)
    return CurateResult(opts.out, manifest["report"]["path"], f"{opts.out}.manifest.json",
                        manifest["rows_in"], manifest["rows_out"], manifest["steps"], manifest)
