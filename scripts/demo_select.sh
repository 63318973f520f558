#!/bin/bash
# Selection beats quantity? (docs/results.md, "Synthetic data and curation"). The pool: the
# quickstart's 600 gold arithmetic rows plus every distinct sample of the distillation
# teacher (scripts/demo_distill.sh: 200 train prompts × 8 samples, 4-shot, T 0.8; many wrong),
# each row carrying `passed` from the numeric grader. Four students with the same steps budget:
#   deita-grader  K rows by the grader's score, diversity τ 0.9 (AlpaGasus-style: a quality
#                 score from a checker; here the checker is exact, an oracle judge)
#   deita-ifd     K rows by IFD under the base model (label-free), diversity τ 0.9
#   random        K random rows (the control)
#   pool          the whole pool, the same number of steps
# then greedy pass@1 on 100 unseen items, paired against the base model.
set -e
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/common.sh"
OUT=${OUT:-select}
K=${K:-300}
STEPS=${STEPS:-16}
SAMPLES=${SAMPLES:-distill/teacher.samples.jsonl}
mkdir -p $OUT
$PY - "$SAMPLES" "$HERE/../corral/assets/quickstart_train.jsonl" "$OUT/pool.jsonl" <<'EOF'
import json, sys
from corral.tasks import get_task
samples, gold, out = sys.argv[1:]
items = {i.source: i for i in get_task("arithmetic", split="train").items}
rows = [dict(json.loads(line), passed=1.0) for line in open(gold)]
seen = set()
for line in open(samples):
    out_row = json.loads(line)
    out_row = out_row.get("output", out_row)  # the job file, or its .partial cache
    item = items[out_row["source"]]
    for s in out_row["samples"]:
        if (item.source, s["text"]) in seen:
            continue
        seen.add((item.source, s["text"]))
        rows.append({"messages": [{"role": m.role, "content": m.content} for m in item.messages]
                     + [{"role": "assistant", "content": s["text"].strip()}],
                     "passed": float(s["passed"])})
with open(out, "w") as f:
    f.writelines(json.dumps(r) + "\n" for r in rows)
right = sum(r["passed"] for r in rows)
print(f"pool: {len(rows)} rows, {right:.0f} correct ({right / len(rows):.0%})")
EOF
$C curate $OUT/pool.jsonl --out $OUT/deita-grader.jsonl --near off --select $K \
   --score-field passed
$C curate $OUT/pool.jsonl --out $OUT/deita-ifd.jsonl --near off --select $K \
   --score-model smollm2-135m-instruct
$C curate $OUT/pool.jsonl --out $OUT/random.jsonl --near off --select $K --select-method random
SFT="model.name=smollm2-135m-instruct train.max_steps=$STEPS train.lr=1e-3 lora.r=16 \
     lora.alpha=32 train.batch_tokens=2048 train.progress=false"
for arm in deita-grader deita-ifd random pool; do
  $C sft $SFT data.train=$OUT/$arm.jsonl run.name=$OUT-$arm
done
for m in $OUT-deita-grader $OUT-deita-ifd $OUT-random $OUT-pool; do
  $C eval --model $m --task arithmetic --split unseen --limit 100 --max-new-tokens 64 \
     --name $OUT-eval-$m
done
for arm in deita-grader deita-ifd random pool; do
  $PY - "$OUT/$arm.jsonl" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print(f"{sys.argv[1]}: {len(rows)} rows, {sum(r['passed'] for r in rows) / len(rows):.0%} correct")
EOF
done
$PY "$HERE/paired.py" runs/distill-eval-smollm2-135m-instruct runs/$OUT-eval-$OUT-deita-grader \
  runs/$OUT-eval-$OUT-deita-ifd runs/$OUT-eval-$OUT-random runs/$OUT-eval-$OUT-pool
