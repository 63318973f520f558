"""Near-dedup and decontamination: corral vs datasketch (and text-dedup) on the same rows.

    python bench/curate.py                       # 100k rows, 5 % planted near-duplicates
    python bench/curate.py --rows 20000          # quicker
    python bench/curate.py --sides corral        # corral alone

Rows: two GSM8K train questions joined (distinct pairs, ~90 words); `--dup-rate` of the rows
are copies of an earlier row with 1-2 word edits (replace, insert or delete a random word),
`--contam-rate` of the rows carry a GSM8K test question. Each side runs in its own spawned
process (peak RSS is its own); the timed part is tokenising + hashing + LSH + dedup decisions,
never building the rows. Precision / recall are on the planted copies: a removed row that is
not a planted copy counts against precision unless its exact Jaccard with the row it was
matched to is ≥ the threshold (a real near-duplicate in GSM8K) — shown as `real dup`.
Needs `pip install -e '.[bench]'` (datasketch).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import GSM8K_DIR, print_table, run_isolated

GSM8K = GSM8K_DIR


def questions(split: str) -> list[str]:
    with open(GSM8K / f"{split}.jsonl", encoding="utf-8") as f:
        return [json.loads(line)["question"] for line in f]


def _edit(text: str, rng: random.Random, vocab: list[str]) -> str:
    words = text.split()
    for _ in range(rng.choice((1, 2))):
        k, op = rng.randrange(len(words)), rng.choice(("replace", "insert", "delete"))
        if op == "replace":
            words[k] = rng.choice(vocab)
        elif op == "insert":
            words.insert(k, rng.choice(vocab))
        elif len(words) > 1:
            del words[k]
    return " ".join(words)


def build(n_rows: int, dup_rate: float, contam_rate: float, seed: int = 0):
    """(rows, planted {copy: source}, contaminated {row: test index}): deterministic."""
    rng = random.Random(seed)
    train, test = questions("train"), questions("test")
    vocab = sorted({w for q in train[:2000] for w in q.split()})
    pairs, rows, planted, contaminated = set(), [], {}, {}
    while len(rows) < n_rows:
        if rows and rng.random() < dup_rate:
            source = rng.randrange(len(rows))
            planted[len(rows)] = source
            rows.append(_edit(rows[source], rng, vocab))
        elif rng.random() < contam_rate:
            t = rng.randrange(len(test))
            contaminated[len(rows)] = t
            rows.append(train[rng.randrange(len(train))] + " " + test[t])
        else:
            a, b = rng.randrange(len(train)), rng.randrange(len(train))
            if a != b and (a, b) not in pairs:
                pairs.add((a, b))
                rows.append(train[a] + " " + train[b])
    return rows, planted, contaminated


def shingle_list(text: str, n: int) -> list[bytes]:
    from corral.curate import tokenize
    w = tokenize(text)
    if len(w) < n:
        return [" ".join(w).encode()]
    return [" ".join(w[i:i + n]).encode() for i in range(len(w) - n + 1)]


def run_corral(spec) -> dict:
    from corral.curate import near_dedup

    rows, _, _ = build(*spec["data"])
    start = time.perf_counter()
    result = near_dedup(rows, spec["threshold"], spec["ngram"], spec["num_perm"])
    seconds = time.perf_counter() - start
    matches = {int(f.source.split()[1]) - 1: int(f.match.split()[1]) - 1 for f in result.removed}
    return {"seconds": seconds, "matches": matches, "note": result.notes[0]}


def run_datasketch(spec) -> dict:
    from datasketch import MinHash, MinHashLSH

    rows, _, _ = build(*spec["data"])
    start = time.perf_counter()
    lsh = MinHashLSH(threshold=spec["threshold"], num_perm=spec["num_perm"])
    matches = {}
    for k, text in enumerate(rows):  # the usual loop: query, then insert if nothing matched
        m = MinHash(num_perm=spec["num_perm"])
        m.update_batch(shingle_list(text, spec["ngram"]))
        hits = lsh.query(m)
        if hits:
            matches[k] = min(hits)
        else:
            lsh.insert(k, m)
    return {"seconds": time.perf_counter() - start, "matches": matches,
            "note": f"bands, rows = {lsh.b}, {lsh.r}"}


def run_text_dedup(spec) -> dict:
    import text_dedup  # noqa: F401  (its CLI works on HF datasets; not wired up here)
    return {"error": "text-dedup installed, but only its CLI on a datasets.Dataset exists"}


def run_corral_decontam(spec) -> dict:
    from corral.curate import EvalItem, decontaminate

    rows, _, _ = build(*spec["data"])
    items = [EvalItem(f"test:{k}", q, "gsm8k") for k, q in enumerate(questions("test"))]
    start = time.perf_counter()
    result = decontaminate(rows, items, ngram=13, threshold=0.5)
    seconds = time.perf_counter() - start
    dropped = sorted(int(f.source.split()[1]) - 1 for f in result.removed)
    return {"seconds": seconds, "dropped": dropped}


def run_python_decontam(spec) -> dict:
    """The plain way: a dict of test 13-gram tuples -> item ids, a Counter per row. (Every
    GSM8K test question has ≥ 16 words, so no short-item containment is needed here.)"""
    from collections import Counter

    from corral.curate import tokenize

    rows, _, _ = build(*spec["data"])
    start = time.perf_counter()
    table, sizes = {}, []
    for k, q in enumerate(questions("test")):
        w = tokenize(q)
        grams = {tuple(w[i:i + 13]) for i in range(len(w) - 12)}
        sizes.append(len(grams) or 1)
        for g in grams:
            table.setdefault(g, []).append(k)
    dropped = []
    for r, text in enumerate(rows):
        w = tokenize(text)
        hits = Counter(k for i in {tuple(w[i:i + 13]) for i in range(len(w) - 12)}
                       for k in table.get(i, ()))
        if hits and max(c / sizes[k] for k, c in hits.items()) >= 0.5:
            dropped.append(r)
    return {"seconds": time.perf_counter() - start, "dropped": dropped}


def jaccard(a: str, b: str, n: int) -> float:
    x, y = set(shingle_list(a, n)), set(shingle_list(b, n))
    return len(x & y) / len(x | y)


def score_near(result: dict, rows, planted, threshold, ngram) -> dict:
    matches = {int(k): v for k, v in result["matches"].items()}
    found = set(matches) & set(planted)
    extra = [k for k in matches if k not in planted]
    real = sum(jaccard(rows[k], rows[matches[k]], ngram) >= threshold for k in extra)
    reachable = {c for c, s in planted.items() if jaccard(rows[c], rows[s], ngram) >= threshold}
    return {"removed": len(matches), "precision": (len(found) + real) / max(len(matches), 1),
            "recall": len(found) / max(len(planted), 1),
            "recall_reachable": len(found & reachable) / max(len(reachable), 1),
            "real_dups": real, "false": len(extra) - real}


def bench_near(args, rows, planted) -> None:
    spec = {"data": (args.rows, args.dup_rate, args.contam_rate, args.seed),
            "threshold": args.threshold, "ngram": args.ngram, "num_perm": args.num_perm}
    sides = {"corral": run_corral, "datasketch": run_datasketch, "text-dedup": run_text_dedup}
    table = []
    for name in args.sides:
        if name == "text-dedup" and not _installed("text_dedup"):
            print("text-dedup: not installed (its wheel pulls pyspark, onnxruntime and unisim "
                  "and pins urllib3<=2.0), so it has no row")
            continue
        result = run_isolated(sides[name], spec)
        result["name"] = name
        if "seconds" in result:
            result["rows_s"] = len(rows) / result["seconds"]
            result.update(score_near(result, rows, planted, args.threshold, args.ngram))
        table.append(result)
    base = next((r.get("rows_s") for r in table if r["name"] == "datasketch"), None)
    for row in table:
        row["ratio"] = row["rows_s"] / base if base and "rows_s" in row else None
    print(f"near dedup: {len(rows)} rows, {len(planted)} planted copies, Jaccard ≥ "
          f"{args.threshold}, {args.ngram}-gram words, num_perm {args.num_perm}")
    print_table(table, [("name", "library", "s"), ("seconds", "s", ".2f"),
                        ("rows_s", "rows/s", ".0f"), ("ratio", "x datasketch", ".2f"),
                        ("removed", "removed", "d"), ("precision", "precision", ".4f"),
                        ("recall", "recall", ".4f"), ("recall_reachable", "recall J≥t", ".4f"),
                        ("real_dups", "real dup", "d"), ("false", "false +", "d"),
                        ("peak_rss_mb", "peak RSS MiB", ".0f"), ("note", "note", "s"),
                        ("error", "error", "s")])


def bench_decontam(args, rows, contaminated) -> None:
    spec = {"data": (args.rows, args.dup_rate, args.contam_rate, args.seed)}
    table = []
    for name, fn in (("corral", run_corral_decontam), ("python dict", run_python_decontam)):
        result = run_isolated(fn, spec)
        result["name"] = name
        if "seconds" in result:
            result["rows_s"] = len(rows) / result["seconds"]
            hit = set(result["dropped"]) & set(contaminated)
            result["recall"] = len(hit) / max(len(contaminated), 1)
            result["n_dropped"] = len(result["dropped"])
        table.append(result)
    if all("dropped" in r for r in table):
        same = table[0]["dropped"] == table[1]["dropped"]
        print(f"decontamination: both drop the same rows: {same}")
    base = table[1].get("rows_s")
    for row in table:
        row["ratio"] = row["rows_s"] / base if base and "rows_s" in row else None
    print(f"decontamination: {len(rows)} rows vs 1319 GSM8K test questions, 13-grams, "
          f"drop at ≥ 0.5 covered; {len(contaminated)} rows planted with a test question")
    print_table(table, [("name", "method", "s"), ("seconds", "s", ".2f"),
                        ("rows_s", "rows/s", ".0f"), ("ratio", "x python", ".2f"),
                        ("n_dropped", "dropped", "d"), ("recall", "recall", ".4f"),
                        ("peak_rss_mb", "peak RSS MiB", ".0f"), ("error", "error", "s")])


def _installed(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dup-rate", type=float, default=0.05)
    parser.add_argument("--contam-rate", type=float, default=0.01)
    parser.add_argument("--threshold", type=float, default=0.7)
    parser.add_argument("--ngram", type=int, default=5)
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sides", nargs="*", default=["corral", "datasketch", "text-dedup"])
    parser.add_argument("--no-decontam", action="store_true")
    args = parser.parse_args()
    rows, planted, contaminated = build(args.rows, args.dup_rate, args.contam_rate, args.seed)
    bench_near(args, rows, planted)
    if not args.no_decontam:
        bench_decontam(args, rows, contaminated)
    print("numbers from a shared machine are noisy; rerun with nothing else on the cores")


if __name__ == "__main__":
    main()
