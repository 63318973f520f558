"""Decontamination: training rows that contain test items, by word n-gram overlap.

    items = eval_items("gsm8k=gsm8k_test.jsonl") + eval_items("evals/x.jsonl")
    items += [i for p in known_splits("data.train.jsonl") for i in eval_items(p)]
    result = decontaminate(rows, items, ngram=13, threshold=0.5, sealed=sealed_index())

For each training row: the test item whose distinct n-grams it covers the most, and the share
covered (covered n-grams / the item's n-grams). Rows at or above `threshold` are dropped; rows
with a smaller overlap are kept and reported. A test item of fewer than n words has no n-gram:
it counts as covered (1.0) when its normalised words appear, in order, inside the row's.
`sealed`: content hashes of sealed unseen rows (only hashes are stored, so a raw row matches
only when identical); such rows are dropped too.

The test n-grams live in one sorted uint64 array with the owning item of each entry: numpy's
form of a dict n-gram hash → item ids, looked up for every training n-gram at once.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from corral.core.errors import CorralError
from corral.core.io import content_hash
from corral.curate.minhash import TEXT_CHUNK
from corral.curate.report import Finding, StepResult
from corral.curate.text import (
    Row,
    encode,
    ngram_hashes,
    prompt_text,
    segments,
    source_of,
    texts_of,
    tokenize,
    whole_hashes,
)

HELD_OUT = ("dev", "unseen")  # the splits a task evaluates on; its train split is for training


@dataclass(frozen=True)
class EvalItem:
    """One test item: where it is (id), the prompt text compared, its test set (target:
    the task name or file, as manifests and `corral lineage` name it) and the
    --decontaminate spec it came from."""
    id: str
    text: str
    target: str
    spec: str = ""


SPEC_HELP = ("a data file (every row), a task (NAME: its dev and unseen splits), "
             "NAME=FILE (every row of the task's local file, as the task reads it) or "
             "NAME:SPLIT[,SPLIT][=FILE] (those splits only)")


def eval_items(spec: str, seed: int = 0) -> list[EvalItem]:
    """Test items of one --decontaminate spec (see `load_test_set`)."""
    return load_test_set(spec, seed)[0]


def load_test_set(spec: str, seed: int = 0) -> tuple[list[EvalItem], dict]:
    """(items, what was checked) of one spec. A data file: every row (any corral row type,
    compared by its prompt). A task: `NAME` its dev and unseen splits (what it evaluates
    on); `NAME=FILE` every row of its local FILE (gsm8k=gsm8k_test.jsonl: the whole test
    file); `NAME:SPLIT[,SPLIT][=FILE]` only those splits (gsm8k:dev,unseen=FILE: the half of
    FILE the task evaluates on, leaving its train half to train on). What was checked:
    spec, target, file, splits ('all' for every row), items, and the file's rows."""
    from corral.tasks import SPLITS, task_names

    if os.path.isfile(spec):
        items = _file_items(spec)
        return items, _checked(spec, spec, spec, "all", items)
    name, _, data = spec.partition("=")
    name, _, split = name.partition(":")
    if name in task_names():
        splits = tuple(s.strip() for s in split.split(",") if s.strip())
        if data and not splits:  # every row of the file: the split that is all of it
            if "test" not in SPLITS.get(name, ()):
                raise CorralError(f"--decontaminate {spec}: {name} reads no data file; give "
                                  f"{name} (its dev and unseen splits) or the file alone")
            items = _task_items(name, ("test",), data, seed, spec)
            return items, _checked(spec, name, data, "all", items)
        items = _task_items(name, splits or HELD_OUT, data, seed, spec)
        return items, _checked(spec, name, data or None, list(splits or HELD_OUT), items)
    if name.endswith((".jsonl", ".ndjson", ".json", ".parquet")):
        raise CorralError(f"--decontaminate {spec}: file not found; check the path")
    from corral.tasks import get_task
    get_task(name)  # raises the unknown-task error, with its did-you-mean
    raise CorralError(f"--decontaminate {spec}: not a task or file; give "
                      f"{SPEC_HELP}")  # pragma: no cover


def _checked(spec: str, target: str, path: str | None, splits, items) -> dict:
    from corral.data.files import read_rows

    rows = sum(1 for _ in read_rows(path)) if path and os.path.isfile(path) else None
    return {"spec": spec, "target": target, "file": path, "splits": splits,
            "items": len(items), "file_rows": rows}


def describe_checked(checked: dict) -> str:
    """One line: what a spec checked, as the CLI prints it."""
    where = f" of {checked['file']}" if checked.get("file") else ""
    if checked["splits"] == "all":
        rows = checked.get("file_rows")
        what = f"all {checked['items']} rows{where}" if rows in (None, checked["items"]) \
            else f"{checked['items']} items from the {rows} rows{where}"
    else:
        what = f"{checked['target']}'s {'+'.join(checked['splits'])} splits{where} " \
               f"({checked['items']} items)"
    grams = f", {checked['ngrams']} distinct {checked['ngram']}-grams" \
        if "ngrams" in checked else ""
    return f"checked {checked['spec']}: {what}{grams}"


def _file_items(path: str) -> list[EvalItem]:
    from corral.data.files import read_rows

    items = []
    for source, row in read_rows(path):
        if isinstance(row, Exception):
            raise CorralError(f"{source}: {row}; fix the row or leave {path} out of "
                              "--decontaminate")
        items.append(EvalItem(source, texts_of([Row(row, source)], prompt=True)[0], path,
                              path))
    if not items:
        raise CorralError(f"--decontaminate {path}: the file has no rows; check it")
    return items


def _task_items(name: str, splits, data: str, seed: int, spec: str = "") -> list[EvalItem]:
    from corral.tasks import get_task

    items = []
    for split in splits:
        task = get_task(name, split=split, data=data, seed=seed)
        items += [EvalItem(f"{name}:{split}:{item.source or k + 1}", prompt_text(item), name,
                           spec or name)
                  for k, item in enumerate(task.items)]
    return items


def known_splits(path) -> list[str]:
    """The dev and unseen files `corral split` wrote beside `<stem>.train.<ext>` (none for a
    file of another name: its dev rows may be meant to stay in it)."""
    p = Path(path)
    parts = p.name.split(".")
    if len(parts) < 3 or parts[1] != "train":
        return []
    return [str(f) for f in (p.with_name(f"{parts[0]}.{s}.jsonl") for s in HELD_OUT)
            if f.is_file()]


def sealed_index() -> dict[str, str]:
    """Content hash → the seal file listing it, for every sealed unseen split in $CORRAL_HOME."""
    from corral.data.splits import sealed_dir

    index = {}
    folder = sealed_dir()
    for path in sorted(folder.glob("*.txt")) if folder.is_dir() else []:
        for line in path.read_text(encoding="utf-8").splitlines():
            index.setdefault(line.strip(), path.name)
    index.pop("", None)
    return index


def decontaminate(rows: list, items: list[EvalItem], ngram: int = 13, threshold: float = 0.5,
                  sealed: dict | None = None, checked: list | None = None) -> StepResult:
    """Drop rows covering ≥ threshold of a test item's n-grams, or sealed as unseen.
    checked: what each spec checked (`load_test_set`); each gets its count of distinct n-grams,
    and the step's params and notes say it."""
    if ngram < 1 or not 0 < threshold <= 1:
        raise CorralError(f"ngram {ngram}, threshold {threshold}: give ngram ≥ 1 and a "
                          "threshold in (0, 1]")
    test_index = _test_index([item.text for item in items], ngram) if items else None
    best, covered, total = overlaps(texts_of(rows), [item.text for item in items], ngram,
                                    index=test_index)
    kept, findings = [], []
    for index, row in enumerate(rows):
        source, data = source_of(row, index), getattr(row, "data", row)
        seal = sealed.get(content_hash(data)) if sealed and isinstance(data, dict) else None
        if seal:
            findings.append(Finding("decontaminate", source, "in a sealed unseen split",
                                    match=f"sealed:{seal}", score=1.0))
            continue
        if best[index] < 0:
            kept.append(row)
            continue
        share, item = float(covered[index] / total[index]), items[best[index]]
        why = f"contains the test item (under {ngram} words)" \
            if len(tokenize(item.text)) < ngram else \
            f"covers {covered[index]}/{total[index]} of the test item's {ngram}-grams"
        findings.append(Finding("decontaminate", source, why, match=item.id, score=share,
                                dropped=bool(share >= threshold)))
        if share < threshold:
            kept.append(row)
    targets = sorted({item.target for item in items})
    checked = [{**c, "ngram": ngram, "ngrams": _ngrams_of(test_index, items, c["spec"])}
               for c in checked or []]
    notes = [describe_checked(c) for c in checked]
    if sealed:
        notes.append(f"checked {len(sealed)} sealed unseen rows by content hash")
    return StepResult("decontaminate", kept, findings,
                      params={"ngram": ngram, "threshold": threshold, "test_items": len(items),
                              "targets": targets, "sealed_hashes": len(sealed or {}),
                              "checked": checked}, notes=notes)


def _ngrams_of(index, items: list[EvalItem], spec: str) -> int:
    """Distinct test n-grams of one spec's items (a short item's whole text counts as one)."""
    if index is None:
        return 0
    keys, owners, _, short = index
    mine = np.array([item.spec == spec for item in items], dtype=bool)
    grams = len(np.unique(keys[mine[owners]])) if len(keys) else 0
    return grams + sum(len(np.unique(whole[mine[docs]])) for whole, docs in short.values())


def _test_index(texts: list[str], n: int):
    """(keys, owners, total, short): test n-gram hashes sorted, with their item; each item's
    count of distinct n-grams (1 for a short item); short items' whole hashes by length."""
    hashes, offsets = encode(texts)
    keys, owners = _distinct(*ngram_hashes(hashes, offsets, n))
    order = np.argsort(keys, kind="stable")
    keys, owners = keys[order], owners[order]
    total = np.bincount(owners, minlength=len(texts))
    lengths = np.diff(offsets)
    short = {}
    for m in np.unique(lengths[(lengths > 0) & (lengths < n)]):
        docs = np.flatnonzero(lengths == m)
        whole = whole_hashes(hashes, offsets, docs)
        order = np.argsort(whole, kind="stable")
        short[int(m)] = (whole[order], docs[order])
        total[docs] = 1
    return keys, owners, total, short


def _distinct(grams: np.ndarray, owner: np.ndarray):
    order = np.lexsort((grams, owner))
    grams, owner = grams[order], owner[order]
    keep = np.ones(len(grams), dtype=bool)
    keep[1:] = (grams[1:] != grams[:-1]) | (owner[1:] != owner[:-1])
    return grams[keep], owner[keep]


def _matches(keys, owners, grams, docs):
    """(doc, item) for every training n-gram (grams, docs) found among the test keys."""
    if not len(keys) or not len(grams):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    pos = np.minimum(np.searchsorted(keys, grams), len(keys) - 1)
    hit = keys[pos] == grams
    grams, docs = _distinct(grams[hit], docs[hit])  # a repeated n-gram covers once
    flat, owner = segments(np.searchsorted(keys, grams, "left"),
                           np.searchsorted(keys, grams, "right"))
    return docs[owner], owners[flat]


def overlaps(train_texts: list[str], test_texts: list[str], n: int = 13, index=None):
    """Per training text: (best item index or −1, covered n-grams of it, its n-gram count).
    Best = the highest covered share; ties go to the earlier test item. index: the test
    texts' `_test_index`, when the caller already built it."""
    size = len(train_texts)
    best = np.full(size, -1, dtype=np.int64)
    covered, total = np.zeros(size, dtype=np.int64), np.ones(size, dtype=np.int64)
    if not test_texts or not train_texts:
        return best, covered, total
    keys, owners, item_total, short = index or _test_index(test_texts, n)
    docs, found = [], []
    for lo in range(0, size, TEXT_CHUNK):  # a chunk at a time: small temporaries
        hashes, offsets = encode(train_texts[lo:lo + TEXT_CHUNK])
        for m, (whole, owner) in [(n, (keys, owners)), *short.items()]:
            d, item = _matches(whole, owner, *ngram_hashes(hashes, offsets, m))
            docs.append(d + lo)
            found.append(item)
    pair = np.concatenate(docs) * len(test_texts) + np.concatenate(found)
    pair, counts = np.unique(pair, return_counts=True)
    doc, item = pair // len(test_texts), pair % len(test_texts)
    share = counts / item_total[item]
    order = np.lexsort((item, -share, doc))
    first = np.ones(len(order), dtype=bool)
    first[1:] = doc[order][1:] != doc[order][:-1]
    pick = order[first]
    best[doc[pick]], covered[doc[pick]], total[doc[pick]] = item[pick], counts[pick], \
        item_total[item[pick]]
    return best, covered, total


def decontaminate_semantic(rows: list, items: list[EvalItem], threshold: float) -> StepResult:
    """Drop rows whose prompt is a paraphrase of a test item: MiniLM cosine ≥ threshold.

    N-gram overlap misses a reworded copy (synonyms every few words leave no 13-gram intact);
    an embedding of the prompt still lands next to the item's. Rows are compared by their
    prompt only, as items are, so a new solution under a copied question is still caught."""
    from corral.curate.embed import embed

    if not 0 < threshold <= 1:
        raise CorralError(f"semantic decontamination threshold {threshold}: give a cosine "
                          "in (0, 1], e.g. 0.9")
    prompts = texts_of(rows, prompt=True)
    row_vecs = embed(prompts)
    item_vecs = embed([item.text for item in items])
    kept, findings = [], []
    for start in range(0, len(rows), 1024):  # [rows, items] similarities, a block at a time
        block = row_vecs[start:start + 1024] @ item_vecs.T
        for offset, sims in enumerate(block):
            index = start + offset
            best = int(sims.argmax()) if len(items) else -1
            if best >= 0 and sims[best] >= threshold:
                findings.append(Finding("decontaminate-semantic", source_of(rows[index], index),
                                        f"its prompt is {sims[best]:.3f} cosine to the test "
                                        "item's", match=items[best].id, score=float(sims[best])))
            else:
                kept.append(rows[index])
    return StepResult("decontaminate-semantic", kept, findings,
                      params={"threshold": threshold, "test_items": len(items),
                              "targets": sorted({item.target for item in items})})
