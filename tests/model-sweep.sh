#!/bin/bash
# The long sweep of the build-step differential test (tests/check_model.c): SEEDS seeds of
# STEPS steps each (default 20 x 200 = 4,000 steps, each an incremental run checked against a
# clean run), from BASE. A failure prints its seed and step; replay it with
#   PMT_MODEL_SEED=N PMT_MODEL_STEPS=K build/tests/check_model
#   bash tests/model-sweep.sh [SEEDS [STEPS [BASE]]]      (after a build in build/)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
export PIXMILL_BIN=${PIXMILL_BIN:-$top/build/cli/pixmill}
export PMT_MODEL_SEEDS=${1:-20} PMT_MODEL_STEPS=${2:-200} PMT_MODEL_BASE=${3:-1000}
[ -x "$PIXMILL_BIN" ] && [ -x "$top/build/tests/check_model" ] ||
  { echo "build first: cmake -S . -B build && cmake --build build" >&2; exit 2; }
exec "$top/build/tests/check_model"
