#!/bin/bash
# Rejection-sampling SFT on GSM8K (docs/results.md, "Synthetic data and curation"). The
# embedded model samples 8 answers at T 0.8 (seed 0) for 200 prompts of the train half of
# GSM8K's train file; the numeric grader keeps the passing ones (`corral synth rejection`);
# LoRA SFT (r 16, alpha 32), 3 epochs at lr 1e-4, seed 0, on the kept rows; then greedy pass@1
# of the base model and of the student on 100 items of the unseen quarter of GSM8K's test
# file, and their paired difference (scripts/paired.py: mean ± stderr each, difference ±
# paired stderr). Run from a work folder:
#   GSM8K=/path/to/gsm8k bash scripts/demo_rejection_gsm8k.sh
# GSM8K is a folder holding the two files of github.com/openai/grade-school-math (train.jsonl,
# test.jsonl; default: this project's shared copy). rs/round1.samples.jsonl (the graded samples)
# is what `demo_feedback.sh card` reads for its GSM8K judge card.
# Smaller runs (the tests run the whole chain on the tiny test model this way): MODEL=DIR,
# LIMIT (prompts, 200), N (samples each, 8), TOKENS (new tokens, 256), EVAL_LIMIT (100), and
# GRADER=SPEC to keep samples by another grader than the task's (e.g. regex:. keeps any).
set -e
HERE="$(cd "$(dirname "$0")" && pwd)"
source "$HERE/common.sh"
G=$(realpath -m "${GSM8K:-$HERE/../../shared/data/gsm8k}")  # sample sources name the real path:
# demo_feedback.sh card matches its GSM8K items to them
M=${MODEL:-smollm2-135m-instruct}
TOKENS=${TOKENS:-256}
mkdir -p rs
$C synth rejection --model $M --task gsm8k --data $G/train.jsonl --split train \
   --limit ${LIMIT:-200} -n ${N:-8} --temperature 0.8 --max-new-tokens $TOKENS --seed 0 \
   ${GRADER:+--grader $GRADER} --out rs/round1.jsonl
$C sft model.name=$M data.train=rs/round1.jsonl train.epochs=3 train.lr=1e-4 lora.r=16 \
   lora.alpha=32 train.seed=0 train.progress=false run.name=rs-sft
E="--task gsm8k --data $G/test.jsonl --split unseen --limit ${EVAL_LIMIT:-100} \
   --max-new-tokens $TOKENS"
$C eval --model $M $E --name rs-eval-base
$C eval --model rs-sft $E --name rs-eval-student
$PY "$HERE/paired.py" runs/rs-eval-base runs/rs-eval-student
