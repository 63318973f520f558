"""Curation of training data: dedup, decontamination, quality scores, budgeted selection.

    from corral.curate import exact_dedup, near_dedup, decontaminate, eval_items, select
    result = near_dedup(rows, threshold=0.7, ngram=5)   # rows: records, Rows, dicts or strings
    result.kept, [f.as_dict() for f in result.findings]

Every step returns a StepResult: the kept rows and a Finding per row it judged (its source,
the reason, the row or test item it matches, the score). `curate_file` runs the steps on a
file and writes output, report and manifest; `corral curate` is its command (docs/curate.md),
and `run(CurateRunOptions(...))` the same command as a library call.
"""
from corral.curate.command import CurateResult, CurateRunOptions, run
from corral.curate.decontam import (
    EvalItem,
    decontaminate,
    eval_items,
    known_splits,
    load_test_set,
    overlaps,
    sealed_index,
)
from corral.curate.dedup import exact_dedup, near_dedup, semantic_dedup
from corral.curate.embed import embed
from corral.curate.pipeline import CurateOptions, curate_file, load_rows, run_steps
from corral.curate.quality import (
    filter_by_score,
    grader_scorer,
    ifd_scores,
    perplexity,
    prompt_and_response,
    score_rows,
)
from corral.curate.report import Finding, StepResult
from corral.curate.select import select
from corral.curate.text import Row, normalize, prompt_text, row_text, tokenize

__all__ = [
    "CurateOptions", "CurateResult", "CurateRunOptions", "EvalItem", "Finding", "Row",
    "StepResult", "curate_file", "decontaminate", "embed", "eval_items", "exact_dedup",
    "filter_by_score", "grader_scorer", "ifd_scores", "known_splits", "load_rows",
    "load_test_set", "near_dedup",
    "normalize", "overlaps", "perplexity", "prompt_and_response", "prompt_text", "row_text",
    "run", "run_steps", "score_rows", "sealed_index", "select", "semantic_dedup", "tokenize",
]
