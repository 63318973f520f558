"""Decontamination demonstration (docs/results.md, "Synthetic data and curation"): plant
copies of GSM8K unseen items in a training file and count what `corral curate
--decontaminate` catches.

The training file is N clean GSM8K train rows (chat form) plus, for P unseen items each:
  exact       the question and its solution as they are;
  near        one number changed and one word swapped (a copy that was "touched up");
  embedded    the question inside a longer instruction ("Here is a word problem ... Show your
              work."), the solution unchanged;
  paraphrase  light rewording: synonyms throughout, the first two sentences swapped;
and reports recall per kind and false positives on the clean rows, for each setting (n-gram
size, covered share, and optionally the MiniLM cosine of the semantic check).

    python scripts/demo_decontam.py [--train N] [--plant P] [--grid 13:0.5,8:0.2]

GSM8K=FOLDER names the folder with GSM8K's train.jsonl and test.jsonl (default: this
project's shared copy). Deterministic: no sampling, no seed.
"""
import argparse
import json
import os
import re
import tempfile
import time
from pathlib import Path

from corral.curate.pipeline import CurateOptions, curate_file
from corral.tasks import get_task

GSM8K = Path(os.environ.get("GSM8K") or
             Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k")
SYNONYMS = {"buys": "purchases", "bought": "purchased", "each": "every", "has": "owns",
            "how many": "what number of", "total": "altogether", "makes": "earns",
            "wants": "would like", "gives": "hands", "gets": "receives", "uses": "needs",
            "day": "daily period", "week": "seven-day week", "then": "after that",
            "much": "large an amount", "If": "Suppose", "She": "The woman", "He": "The man",
            "money": "cash", "half": "one half", "twice": "two times", "more": "additional"}


def chat(question: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": question},
                         {"role": "assistant", "content": answer}]}


def near(question: str) -> str:
    numbers = re.findall(r"\d+", question)
    if numbers:  # change the first number by one
        question = question.replace(numbers[0], str(int(numbers[0]) + 1), 1)
    for word, other in (("ducks", "geese"), ("eggs", "apples"), ("day", "morning")):
        if word in question:
            return question.replace(word, other, 1)
    words = question.split()
    if len(words) > 4:
        words[len(words) // 2] = "the"
    return " ".join(words)


def paraphrase(question: str) -> str:
    sentences = re.split(r"(?<=[.!?])\s+", question.strip())
    if len(sentences) > 2:
        sentences[0], sentences[1] = sentences[1], sentences[0]
    text = " ".join(sentences)
    for word, other in SYNONYMS.items():
        text = re.sub(rf"\b{re.escape(word)}\b", other, text)
    return f"Consider the following. {text}"


def build(train_n: int, plant_n: int, folder: Path) -> tuple[Path, dict]:
    train = [json.loads(line) for line in (GSM8K / "train.jsonl").open()][:train_n]
    unseen = get_task("gsm8k", split="unseen", data=str(GSM8K / "test.jsonl")).items[:plant_n]
    rows, kinds = [chat(r["question"], r["answer"]) for r in train], {}
    kinds.update({k: "clean" for k in range(len(rows))})
    for item in unseen:
        q, a = str(item.fields["question"]), str(item.fields["answer"])
        for kind, text in (("exact", q), ("near", near(q)), ("paraphrase", paraphrase(q)),
                           ("embedded", f"Here is a word problem from a worksheet. {q} "
                                        "Show your work and give the number at the end.")):
            kinds[len(rows)] = kind
            rows.append(chat(text, a))
    path = folder / "planted.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, kinds


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--train", type=int, default=2000)
    ap.add_argument("--plant", type=int, default=100)
    ap.add_argument("--grid", default="13:0.5,8:0.5,8:0.2,13:0.5:0.9,13:0.5:0.85",
                    help="NGRAM:THRESHOLD[:COSINE] settings to compare (COSINE adds the "
                         "MiniLM paraphrase check)")
    args = ap.parse_args(argv)
    folder = Path(tempfile.mkdtemp())
    table = {}
    path, kinds = build(args.train, args.plant, folder)
    target = f"gsm8k:unseen={GSM8K / 'test.jsonl'}"
    order = ["exact", "near", "embedded", "paraphrase", "clean"]
    print(f"{len(kinds)} rows: {args.train} clean + {args.plant} unseen items × 4 plants; "
          f"against {target}")
    print("| n-gram, share[, cosine] | " + " | ".join(order) + " | seconds |")
    print("| --- " * (len(order) + 2) + "|")
    for setting in args.grid.split(","):
        parts = setting.split(":")
        n, threshold = int(parts[0]), float(parts[1])
        cosine = float(parts[2]) if len(parts) > 2 else None
        start = time.process_time()
        out = folder / f"clean-{setting}.jsonl"
        curate_file(str(path), str(out), CurateOptions(
            exact=False, near=None, decontaminate=(target,), known_splits=False,
            decontam_ngram=n, decontam_threshold=threshold,
            decontam_semantic=cosine))
        seconds = time.process_time() - start
        dropped = set()
        for line in Path(f"{out}.report.jsonl").read_text().splitlines():
            finding = json.loads(line)
            if finding.get("dropped", True):
                dropped.add(int(finding["source"].rsplit(":", 1)[1]) - 1)
        cells = []
        for kind in order:
            rows = [k for k, v in kinds.items() if v == kind]
            hit = sum(k in dropped for k in rows)
            cells.append(f"{hit}/{len(rows)}")
        print(f"| {setting.replace(':', ', ')} | " + " | ".join(cells) + f" | {seconds:.1f} |")
        table[setting] = dict(zip(order, cells))
    return table


if __name__ == "__main__":
    main()
