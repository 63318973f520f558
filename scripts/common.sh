# Sourced by the shell demos: how they run corral and python.
#   C   one corral command, timed (user+system CPU and wall seconds on stderr); CORRAL=... picks
#       the executable (default: `corral` on PATH)
#   PY  the python for the demos' small helper steps (PYTHON=..., default `python`)
# With CORRAL_RECORD=FILE nothing runs: each corral command's argv is appended to FILE as one
# JSON list and the python steps are skipped, so `python scripts/check_commands.py --recorded
# FILE` (and tests/test_scripts.py) can check every command against today's CLI in seconds.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
PY=${PYTHON:-python}
C="/usr/bin/time -f %U+%Ss_CPU_%es_wall ${CORRAL:-corral}"
corral_record() { python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@" >> "$CORRAL_RECORD"; }
if [ -n "${CORRAL_RECORD:-}" ]; then
  C=corral_record
  PY=true
fi
