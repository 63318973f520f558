"""Dev and sealed unseen splits assigned by content hash (stable when rows are added).

`corral split DATA --dev 0.1 --unseen 0.1` writes DATA's train/dev/unseen files and seals the
unseen rows' hashes under $CORRAL_HOME/sealed/, so every training command refuses them.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from corral.core.errors import CorralError
from corral.core.io import atomic_write_lines, content_hash, corral_home


def assign(digest: str, dev: float, unseen: float) -> str:
    """'unseen' | 'dev' | 'train' from the hash alone: a row keeps its split forever."""
    position = int(digest[:16], 16) / float(1 << 64)
    if position < unseen:
        return "unseen"
    return "dev" if position < unseen + dev else "train"


def sealed_dir() -> Path:
    return corral_home() / "sealed"


def split_file(path: str, dev: float, unseen: float, out_dir: str | None = None) -> dict:
    """Write <stem>.{train,dev,unseen}.jsonl next to the data (or in out_dir); seal unseen."""
    from corral.data.readers import read_rows

    if not (0 <= dev < 1 and 0 <= unseen < 1 and dev + unseen < 1):
        raise CorralError("--dev and --unseen must be fractions in [0, 1) that sum to less than 1")
    parts: dict[str, list[str]] = {"train": [], "dev": [], "unseen": []}
    unseen_hashes, first_seen, repeats = [], {}, []
    for source, row in read_rows(path):
        if isinstance(row, Exception) or not isinstance(row, dict):
            raise CorralError(f"{source}: not a JSON object ({row}); fix the row and split again")
        digest = content_hash(row)
        if digest in first_seen:  # same content, same split: it cannot leak, but it is counted
            repeats.append((source, first_seen[digest]))
        first_seen.setdefault(digest, source)
        name = assign(digest, dev, unseen)
        parts[name].append(json.dumps(row, ensure_ascii=False))
        if name == "unseen":
            unseen_hashes.append(digest)
    if not first_seen:
        raise CorralError(f"{path}: no rows to split; check the file")
    src = Path(path)
    target = Path(out_dir) if out_dir else src.parent
    target.mkdir(parents=True, exist_ok=True)
    stem = src.name.split(".")[0]
    for name, lines in parts.items():
        atomic_write_lines(target / f"{stem}.{name}.jsonl", lines)
    seal(unseen_hashes, label=stem)
    counts = {name: len(lines) for name, lines in parts.items()}
    if repeats:
        counts["duplicates"] = len(repeats)
        counts["first_duplicate"] = f"{repeats[0][0]} repeats {repeats[0][1]}"
    return counts


def seal(hashes, label: str) -> Path:
    """Record hashes that training must never see."""
    folder = sealed_dir()
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256("".join(sorted(hashes)).encode()).hexdigest()[:16]
    path = folder / f"{label}-{digest}.txt"
    atomic_write_lines(path, sorted(hashes))
    return path


def sealed_hashes() -> set[str]:
    folder = sealed_dir()
    hashes: set[str] = set()
    if folder.is_dir():
        for path in folder.glob("*.txt"):
            hashes.update(line.strip() for line in path.read_text().splitlines() if line.strip())
    return hashes


def refuse_unseen(path: str, extra_unseen: str = "") -> None:
    """Stop before training if any row of `path` is in a sealed unseen split."""
    from corral.data.readers import read_rows

    sealed = sealed_hashes()
    if extra_unseen:
        sealed |= {content_hash(r) for _, r in read_rows(extra_unseen) if isinstance(r, dict)}
    if not sealed:
        return
    hits = [source for source, row in read_rows(path)
            if isinstance(row, dict) and content_hash(row) in sealed]
    if hits:
        shown = ", ".join(hits[:5]) + (f" and {len(hits) - 5} more" if len(hits) > 5 else "")
        raise CorralError(f"{len(hits)} training rows are in a sealed unseen split ({shown}); "
                          "remove them (train on the .train.jsonl file that `corral split` wrote)")


def refuse_sealed_items(items, split: str = "", what: str = "training data",
                        flag: str = "--split") -> None:
    """The one guard for every command that turns task items into training data (synth,
    pairs, feedback label, constitutional): refuse the `unseen` split by name, and refuse items
    read from rows that a `corral split` sealed (a prompt file that *is* an unseen split, given
    by path). Prompts are checked where they came from (`file:line`), because the rows a
    command writes hold answers too, so a whole-row hash check at training time would not see
    them."""
    if split == "unseen":
        raise CorralError(f"{flag} unseen: {what} made from the unseen split would leak it "
                          f"into training; use {flag} train")
    sealed = sealed_hashes()
    if not sealed:
        return
    from corral.data.files import read_rows

    wanted: dict[str, set[str]] = {}
    for item in items:
        path, _, _ = str(getattr(item, "source", "")).rpartition(":")
        if path and Path(path).is_file():
            wanted.setdefault(path, set()).add(item.source)
    hits = [source for path, sources in wanted.items() for source, row in read_rows(path)
            if source in sources and isinstance(row, dict) and content_hash(row) in sealed]
    if hits:
        shown = ", ".join(hits[:5]) + (f" and {len(hits) - 5} more" if len(hits) > 5 else "")
        raise CorralError(f"{len(hits)} prompts are in a sealed unseen split ({shown}); "
                          f"{what} made from them would leak it into training: give the "
                          ".train.jsonl file that `corral split` wrote")
