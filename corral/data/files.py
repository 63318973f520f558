"""Data files (.jsonl, .ndjson, .json, .parquet or a Hugging Face dataset id) as raw rows:
`read_rows(path)` yields `(source, row)` with source = "file:line", a row that cannot be read
as a RowError in its place, so the record parsers in readers.py report every problem at once.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator

from corral.core.errors import CorralError

# A missing path with one of these suffixes is a mistyped file, never a hub id.
DATA_SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet", ".csv", ".tsv", ".txt", ".arrow")
JSON_LIST_KEYS = ("data", "rows", "train")  # where a .json object keeps its list of rows
HF_ID = re.compile(r"^[\w.-]+/[\w.-]+(:[\w.-]+){0,2}$")  # owner/name[:split] or [:config:split]


class RowError(ValueError):
    """What is wrong with one row; the loader prefixes it with the row's source."""


def read_rows(path) -> Iterator[tuple[str, dict | Exception]]:
    """Yield `(source, row)` per row; a row that cannot be read is yielded as a RowError.

    Sources: `file:line` (JSONL, 1-based), `file:item N` (.json), `file:row N` (.parquet and
    Hugging Face datasets). A missing file raises CorralError at once. A data.train mixture
    (a list of files, see `corral.core.sections.data_files`) yields every row of each file
    once, weights aside: what a check of the rows (sealed unseen rows, the format) reads.
    """
    if isinstance(path, (list, tuple)):
        from itertools import chain

        from corral.core.sections import data_files

        return chain.from_iterable([read_rows(f.path) for f in data_files(path)])
    path = str(path)
    if os.path.isfile(path):
        return _reader_for(path)(path)
    if _looks_like_hf_id(path):
        return _read_hf(path)
    head, _, tail = path.rpartition(":")
    if head and os.path.isfile(head) and re.fullmatch(r"[\d.]+", tail):
        raise CorralError(f"data file not found: {path}; a weight needs a list of files: "
                          f"data.train=[{path}] (or drop :{tail})")
    raise CorralError(f"data file not found: {path}; check the path, or give a Hugging Face "
                      "dataset id like owner/name or owner/name:split")


def _reader_for(path: str) -> Callable[[str], Iterator]:
    suffix = os.path.splitext(path)[1].lower()
    readers = {".jsonl": _read_jsonl, ".ndjson": _read_jsonl, ".json": _read_json,
               ".parquet": _read_parquet}
    if suffix not in readers:
        raise CorralError(f"{path}: unsupported file type {suffix or '(none)'!r}; "
                          "use .jsonl, .json or .parquet")
    return readers[suffix]


def _looks_like_hf_id(path: str) -> bool:
    if not HF_ID.match(path) or os.path.splitext(path)[1].lower() in DATA_SUFFIXES:
        return False
    # "data/train" with a local data/ folder is a missing local file, not a hub dataset.
    return not os.path.isdir(path.split("/")[0])


def json_type(value) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _as_row(value) -> dict | RowError:
    return value if isinstance(value, dict) else RowError(f"row is {json_type(value)}, "
                                                          "not a JSON object")


def _parse_json_text(text: str) -> dict | RowError:
    try:
        return _as_row(json.loads(text))
    except json.JSONDecodeError as e:
        return RowError(f"not valid JSON: {e.msg} at column {e.colno}")


def _read_jsonl(path: str) -> Iterator[tuple[str, dict | Exception]]:
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8-sig")  # -sig: tolerate a byte-order mark
            except UnicodeDecodeError:
                yield f"{path}:{line_no}", RowError("not valid UTF-8 text; save the file as UTF-8")
                continue
            if line.strip():
                yield f"{path}:{line_no}", _parse_json_text(line)


def _read_json(path: str) -> Iterator[tuple[str, dict | Exception]]:
    try:
        with open(path, encoding="utf-8-sig") as f:
            doc = json.load(f)
    except UnicodeDecodeError as e:
        raise CorralError(f"{path}: not valid UTF-8 text; save the file as UTF-8") from e
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # JSON Lines saved under a .json name
            return _read_jsonl(path)
        error = RowError(f"not valid JSON: {e.msg} at column {e.colno}")
        return iter([(f"{path}:{e.lineno}", error)])
    items = _json_items(path, doc)
    return ((f"{path}:item {n}", _as_row(item)) for n, item in enumerate(items, 1))


def _json_items(path: str, doc) -> list:
    if isinstance(doc, list):
        return doc
    if isinstance(doc, dict):
        for key in JSON_LIST_KEYS:
            if isinstance(doc.get(key), list):
                return doc[key]
    keys = f" with keys {sorted(doc)}" if isinstance(doc, dict) else ""
    raise CorralError(f"{path}: a .json file must hold a list of row objects, or an object with "
                      f"that list under 'data', 'rows' or 'train'; found {json_type(doc)}{keys}")


def _read_parquet(path: str) -> Iterator[tuple[str, dict | Exception]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise CorralError("reading .parquet files needs pyarrow: pip install pyarrow") from e
    try:
        parquet_file = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a corrupt or foreign file
        raise CorralError(f"{path}: not a readable parquet file ({e})") from e
    rows = (row for batch in parquet_file.iter_batches(batch_size=1024)
            for row in batch.to_pylist())
    return ((f"{path}:row {n}", row) for n, row in enumerate(rows, 1))


def _read_hf(hf_id: str) -> Iterator[tuple[str, dict | Exception]]:
    try:
        import datasets
    except ImportError as e:
        raise CorralError(f"{hf_id} is not a local file, and loading a Hugging Face dataset "
                          "needs the datasets package: pip install datasets") from e
    name, *rest = hf_id.split(":")
    config = rest[0] if len(rest) == 2 else None
    split = rest[-1] if rest else "train"
    try:
        dataset = datasets.load_dataset(name, config, split=split)
    except Exception as e:  # network, missing dataset, bad split: all reported the same way
        raise CorralError(f"could not load Hugging Face dataset {hf_id!r}: {e}") from e
    return ((f"{hf_id}:row {n}", _as_row(row)) for n, row in enumerate(dataset, 1))
