#!/bin/bash
# Distilling inference-time compute (docs/results.md, "Synthetic data and curation"): the
# teacher is the embedded model with 4 worked examples and a majority vote over 8 samples; the
# students are the same model, zero-shot and greedy, after SFT on (a) the teacher's majority
# answers (no labels), (b) only those the grader passes, and (c) the gold solutions of the
# same 200 prompts. Seeds: sampling --seed 0 and train.seed 0 (the defaults).
set -e
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/common.sh"
OUT=${OUT:-distill}
mkdir -p $OUT
T="--task arithmetic --split train --limit 200 --few-shot 4 -n 8 --temperature 0.8 \
   --max-new-tokens 64 --rule majority --samples $OUT/teacher.samples.jsonl"
$C synth distill $T --out $OUT/majority.jsonl
$C synth distill $T --require-pass --out $OUT/majority-pass.jsonl
SFT="model.name=smollm2-135m-instruct train.epochs=2 train.lr=1e-3 lora.r=16 lora.alpha=32 \
     train.batch_tokens=2048 train.progress=false"
$C sft $SFT data.train=$OUT/majority.jsonl run.name=$OUT-majority
$C sft $SFT data.train=$OUT/majority-pass.jsonl run.name=$OUT-majority-pass
$C sft $SFT data.task=arithmetic data.limit=200 run.name=$OUT-gold
for m in smollm2-135m-instruct $OUT-majority $OUT-majority-pass $OUT-gold; do
  $C eval --model $m --task arithmetic --split unseen --limit 100 --max-new-tokens 64 \
     --name $OUT-eval-$m
done
$PY "$HERE/paired.py" runs/$OUT-eval-smollm2-135m-instruct runs/$OUT-eval-$OUT-majority \
  runs/$OUT-eval-$OUT-majority-pass runs/$OUT-eval-$OUT-gold
