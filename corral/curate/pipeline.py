"""The curation pipeline on a data file: steps in order, then output, report and manifest.

    options = CurateOptions(decontaminate=("gsm8k=gsm8k_test.jsonl",),
                            select=1000, select_method="kcenter")
    manifest = curate_file("train.jsonl", "train.curated.jsonl", options)

Order: exact dedup → decontaminate → near dedup → semantic dedup → selection. Decontamination
runs before near dedup so that a clean row is never dropped as the copy of a contaminated row
that decontamination would then remove. The output holds the kept rows exactly as read; the
report (JSONL) has one line per finding; `<out>.manifest.json` records both files' sha256, the
counts and every step's removals and parameters (`corral lineage` reads the decontamination
targets from it).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from corral.core.errors import CorralError
from corral.core.io import atomic_write_lines, file_sha256
from corral.curate.decontam import (
    decontaminate,
    decontaminate_semantic,
    known_splits,
    load_test_set,
    sealed_index,
)
from corral.curate.dedup import exact_dedup, near_dedup, semantic_dedup
from corral.curate.report import StepResult
from corral.curate.select import select
from corral.curate.text import Row, source_of, texts_of


@dataclass(frozen=True)
class CurateOptions:
    """None turns a similarity step off; select=0 skips selection."""
    exact: bool = True
    near: float | None = 0.7  # Jaccard of word n-grams
    ngram: int = 5
    num_perm: int = 128
    semantic: float | None = None  # cosine of MiniLM embeddings
    decontaminate: tuple = ()  # data files, NAME, NAME=FILE, NAME:SPLIT[,SPLIT][=FILE]
    known_splits: bool = True  # sealed unseen hashes + dev/unseen files beside X.train.jsonl
    decontam_ngram: int = 13
    decontam_threshold: float = 0.5
    decontam_semantic: float | None = None  # MiniLM cosine of prompts: catches paraphrases
    select: int = 0
    select_method: str = "deita"
    tau: float = 0.9
    score_field: str = ""  # deita's scores from a numeric field of each row
    seed: int = 0


def load_rows(path: str) -> list[Row]:
    """Every row of a data file, validated as the record type its first row suggests
    (preference, KTO feedback, GSM8K-style items, else SFT), kept raw for the output."""
    from corral.data import readers
    from corral.data.files import read_rows

    raw = dict(read_rows(path))
    first = next((row for row in raw.values() if isinstance(row, dict)), None)
    if first is None and not any(isinstance(row, Exception) for row in raw.values()):
        raise CorralError(f"{path} has no rows; give a JSONL file of training rows")
    keys = set(first or {})
    if {"chosen", "rejected"} <= keys or "preferred_output" in keys:
        records = readers.load_preference_records(path)
    elif "label" in keys:
        records = readers.load_feedback_records(path)
    elif "question" in keys and not keys & {"messages", "prompt", "text"}:
        records = readers.load_items(path)
    else:
        records = readers.load_sft_records(path)
    return [Row(raw[r.source], r.source, r) for r in records]


def _test_items(options: CurateOptions, train_path: str) -> tuple[list, list]:
    """(test items, what each spec checked) of --decontaminate and the known splits."""
    specs = (known_splits(train_path) if options.known_splits and train_path else []) + \
        list(options.decontaminate)
    items, checked = [], []
    for spec in dict.fromkeys(specs):
        found, what = load_test_set(spec, seed=options.seed)
        items += found
        checked.append(what)
    return items, checked


def _field_scores(rows: list[Row], key: str) -> list[float]:
    scores = []
    for index, row in enumerate(rows):
        value = row.data.get(key) if isinstance(row, Row) else None
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise CorralError(f"{source_of(row, index)}: --score-field {key}: the row has no "
                              f"number under '{key}'; add it or score with --score-model")
        scores.append(float(value))
    return scores


def run_steps(rows: list, options: CurateOptions, train_path: str = "",
              scorer=None) -> list[StepResult]:
    """Each enabled step on the rows the one before kept. scorer(rows) -> one float per row:
    the selection's scores (else options.score_field); its `name`, if any, goes in params."""
    results: list[StepResult] = []
    vectors: dict[int, object] = {}  # embeddings by id(row): computed once, shared

    def embeddings(current):
        from corral.curate.embed import embed
        missing = [r for r in current if id(r) not in vectors]
        for row, vector in zip(missing, embed(texts_of(missing))):
            vectors[id(row)] = vector
        return [vectors[id(r)] for r in current]

    def step(result: StepResult) -> list:
        results.append(result)
        return result.kept

    if options.exact:
        rows = step(exact_dedup(rows))
    items, checked = _test_items(options, train_path)
    sealed = sealed_index() if options.known_splits else {}
    if items or sealed:
        rows = step(decontaminate(rows, items, options.decontam_ngram,
                                  options.decontam_threshold, sealed, checked))
    if items and options.decontam_semantic is not None:
        rows = step(decontaminate_semantic(rows, items, options.decontam_semantic))
    if options.near is not None:
        rows = step(near_dedup(rows, options.near, options.ngram, options.num_perm,
                               seed=options.seed))
    if options.semantic is not None:
        rows = step(semantic_dedup(rows, options.semantic, embeddings=embeddings(rows)))
    if options.select:
        method = options.select_method
        scores = None
        if method == "deita" or scorer or options.score_field:
            scores = scorer(rows) if scorer else \
                _field_scores(rows, options.score_field) if options.score_field else None
        vecs = embeddings(rows) if method != "random" and 0 < options.select <= len(rows) \
            else None
        rows = step(select(rows, options.select, method, scores=scores, embeddings=vecs,
                           tau=options.tau, seed=options.seed))
        if scores is not None:  # what the ranking came from, for the manifest
            results[-1].params["scores"] = getattr(scorer, "name", "scorer") if scorer else \
                f"field:{options.score_field}"
    return results


def curate_file(in_path: str, out_path: str, options: CurateOptions = CurateOptions(),
                report_path: str = "", scorer=None) -> dict:
    """Curate `in_path` into `out_path` (JSONL); the report goes to report_path (default
    `<out>.report.jsonl`). Returns the manifest written to `<out>.manifest.json`."""
    from corral.store.jobs import manifest_path, write_manifest

    if Path(out_path).resolve() == Path(in_path).resolve():
        raise CorralError(f"--out {out_path} is the input file; write the curated rows to a new "
                          "file so the input stays as it was")
    rows = load_rows(in_path)
    results = run_steps(rows, options, train_path=in_path, scorer=scorer)
    kept = results[-1].kept if results else rows
    atomic_write_lines(out_path, [json.dumps(row.data, ensure_ascii=False) for row in kept])
    report = report_path or f"{out_path}.report.jsonl"
    atomic_write_lines(report, [json.dumps(f.as_dict(), ensure_ascii=False)
                                for result in results for f in result.findings])
    steps = []
    for result in results:
        entry = result.summary()
        if "targets" in result.params:  # where `corral lineage` looks for what was checked
            entry["targets"] = result.params["targets"]
        if "checked" in result.params:  # which rows of which file, how many n-grams
            entry["checked"] = result.params["checked"]
        steps.append(entry)
    source = manifest_path(in_path)
    sources = [json.loads(source.read_text(encoding="utf-8"))] if source.is_file() else []
    write_manifest(out_path, kind="curate",
                   input={"path": str(in_path), "sha256": file_sha256(in_path),
                          "rows": len(rows)},
                   rows_in=len(rows), rows_out=len(kept), steps=steps, options=asdict(options),
                   report={"path": report, "sha256": file_sha256(report)}, sources=sources)
    return json.loads(manifest_path(out_path).read_text(encoding="utf-8"))
