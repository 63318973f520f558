#!/bin/bash
# AI-feedback demonstrations (docs/results.md, "AI feedback"), the embedded model only. Run
# from a work folder; each part is one CPU-heavy job at a time:
#   bash demo_feedback.sh card        # the judge's report card on arithmetic and GSM8K
#   bash demo_feedback.sh strategies  # greedy / majority / best-of-n / refine / debate
#   bash demo_feedback.sh rlaif       # DPO on judge-labelled vs grader-labelled pairs
#   bash demo_feedback.sh cai         # constitutional SFT, measured by IFEval-style rules
# rlaif reuses distill/teacher.samples.jsonl from scripts/demo_distill.sh.
set -e
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/common.sh"
M=smollm2-135m-instruct
G=$(realpath -m "${GSM8K:-$HERE/../../shared/data/gsm8k}")  # sources name the real path
mkdir -p fb

card() {
  A="--task arithmetic --split dev --limit 60 --model $M -n 4 --max-new-tokens 64"
  # A 135M judge does not write "Score: N" (it solves the problem again): generated verdicts
  # stop with "no parsable verdict"; so the card reads the likeliest verdict token instead.
  $C judge audit --judge $M $A --samples fb/arith-dev.samples.jsonl --no-reasoning \
     --max-items 30 --cache fb/judge.cache.jsonl --out fb/card-arith-generate.json || true
  $C judge audit --judge $M $A --samples fb/arith-dev.samples.jsonl --verdict logprob \
     --max-items 60 --cache fb/judge.cache.jsonl --out fb/card-arith.json
  card_gsm8k
}

card_gsm8k() {
  # GSM8K train samples of the rejection demo (scripts/demo_rejection_gsm8k.sh)
  if [ -f rs/round1.samples.jsonl ] || [ -n "${CORRAL_RECORD:-}" ]; then
    $C judge audit --judge $M --task gsm8k --data $G/train.jsonl --split train --limit 200 \
       --samples rs/round1.samples.jsonl --verdict logprob --max-items 60 \
       --cache fb/judge.cache.jsonl --out fb/card-gsm8k.json
  fi
}

strategies() {
  $C eval --model $M --task arithmetic --split unseen --limit 50 --max-new-tokens 64 \
     --strategy greedy,majority:4,majority:8,best-of-n:4:judge,best-of-n:4,refine:1,debate:3x2 \
     --plot fb/strategies-arithmetic.svg --name fb-strategies
}

rlaif() {
  S=distill/teacher.samples.jsonl
  L="--judge $M --task arithmetic --split train --limit 200 --samples $S --verdict logprob \
     --per-prompt 2 --max-items 40 --cache fb/judge.cache.jsonl"
  # Raw both-order agreement first (the 135M judge's verdict follows the position), then
  # the calibrated labels (mean margin of the two orders) that DPO trains on.
  $C feedback label $L --no-audit --out fb/rlaif-judge-raw.jsonl
  $C feedback label $L --calibrate --out fb/rlaif-judge.jsonl
  $PY - "$S" fb/rlaif-grader.jsonl <<'EOF'
# The control: the same candidate pairs (same seed), labelled by the grader instead.
import json, random, sys
from corral.feedback.label import candidate_pairs
from corral.tasks import get_task
rows = [json.loads(line) for line in open(sys.argv[1])]
samples = {r["source"]: r["samples"] for r in rows}
prompts = {i.source: [{"role": m.role, "content": m.content} for m in i.messages]
           for i in get_task("arithmetic", split="train", limit=200).items}
out = []
for source, a, b in candidate_pairs(samples, None, 2, random.Random(0)):
    if a["passed"] == b["passed"]:
        continue
    good, bad = (a, b) if a["passed"] else (b, a)
    out.append({"prompt": prompts[source],
                "chosen": [{"role": "assistant", "content": good["text"].strip()}],
                "rejected": [{"role": "assistant", "content": bad["text"].strip()}]})
open(sys.argv[2], "w").writelines(json.dumps(r) + "\n" for r in out)
print(f"grader-labelled pairs: {len(out)}")
EOF
  D="model.name=$M train.epochs=2 train.lr=2e-4 dpo.beta=0.1 lora.r=16 lora.alpha=32 \
     train.progress=false"
  $C dpo $D data.train=fb/rlaif-judge.jsonl run.name=fb-dpo-judge
  $C dpo $D data.train=fb/rlaif-grader.jsonl run.name=fb-dpo-grader
  for m in fb-dpo-judge fb-dpo-grader; do
    $C eval --model $m --task arithmetic --split unseen --limit 100 --max-new-tokens 64 \
       --name fb-eval-$m
  done
  $PY "$HERE/paired.py" runs/distill-eval-$M runs/fb-eval-fb-dpo-judge \
     runs/fb-eval-fb-dpo-grader
}

cai() {
  $C feedback constitutional --mode sl --task ifeval-like --split train --model $M \
     --rounds 1 --max-new-tokens 160 --critic-max-new-tokens 96 --keep-truncated \
     --out fb/cai-sl.jsonl
  $C sft model.name=$M data.train=fb/cai-sl.jsonl train.epochs=2 train.lr=5e-4 lora.r=16 \
     lora.alpha=32 train.progress=false run.name=fb-cai-sft
  for m in $M fb-cai-sft; do
    $C eval --model $m --task ifeval-like --split unseen --max-new-tokens 160 \
       --name fb-eval-cai-$m
  done
  $PY "$HERE/paired.py" runs/fb-eval-cai-$M runs/fb-eval-cai-fb-cai-sft
}

for part in "${@:-card strategies rlaif cai}"; do
  for p in $part; do $p; done
done
