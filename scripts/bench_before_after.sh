#!/bin/bash
# corral's own overhead before and after a change, on a quiet machine:
#   scripts/bench_before_after.sh REV [ROUNDS]
# REV is checked out in a git worktree and put first on PYTHONPATH for the "before" rows;
# each round runs bench/sft.py on the tiny model (corral only) and times `corral eval` on it.
set -euo pipefail
REV=${1:?give the revision to compare against, e.g. HEAD~5}
ROUNDS=${2:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=$ROOT/.venv/bin/python
WORK=$(mktemp -d)
trap 'git -C "$ROOT" worktree remove --force "$WORK/before" >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
git -C "$ROOT" worktree add -q "$WORK/before" "$REV"
export CORRAL_HOME=$WORK/home
$PY -c "from corral.testing import save_tiny; save_tiny('$WORK/tiny')" >/dev/null 2>&1
for round in $(seq "$ROUNDS"); do
  for side in before after; do
    if [ "$side" = before ]; then export PYTHONPATH=$WORK/before; else export PYTHONPATH=$ROOT; fi
    echo "=== $side, round $round"
    $PY "$ROOT/bench/sft.py" --model tiny --mode both --steps 10 --trl 2>&1 | grep "| tiny"
    rm -rf "$WORK/evalroot"
    $PY -c "
import time
from corral.cli.app import main
t = time.time()
main(['eval', '--model', '$WORK/tiny', '--task', 'arithmetic', '--limit', '128', '-n', '4',
      '-k', '1,4', '--max-new-tokens', '32', '--root', '$WORK/evalroot', '--name', 'b'])
print('eval seconds', round(time.time() - t, 2))" 2>&1 | grep "eval seconds"
  done
done
