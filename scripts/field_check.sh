#!/usr/bin/env bash
# The product as a user gets it (`make test` runs this beside the test suite; `make field-check` alone):
#   1. build the wheel and install it into a new virtual environment outside the checkout;
#   2. from a folder that is not the checkout, with an empty PREFECT_HOME, run what a user runs first:
#      tuneflow --help, sample, a tiny retrain (random weights, 32 px, 1 epoch), predict on one of its validation
#      photos, and load both deployments' entrypoints as a worker would;
#   3. meanwhile, run the README's demo command (`make demo`) with another empty PREFECT_HOME.
# The demo runs beside the wheel's steps: each is mostly one core's work (tracing ResNet50 is single-threaded),
# so on two cores the pair takes little longer than the longer of the two. (`tuneflow gpu-check` runs in the test
# suite, test_training.py; test_packaging.py checks that the wheel holds every module it imports.)
# Tests run the checkout through an editable install; only this catches a wheel that lacks a module, a command
# that needs the checkout's folder, or a first start of Prefect that times out.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/tuneflow-field-check.XXXXXX")"
demo_pid=
stop_demo() { [[ -n "$demo_pid" ]] && kill -- "-$demo_pid" 2>/dev/null; demo_pid=; }
trap 'stop_demo; rm -rf "$WORK"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM  # stopped from outside (an interrupted `make test`): the EXIT trap above still stops the demo
passed=0
failed=0

started=$SECONDS
step() { echo; echo "field-check: [$((SECONDS - started)) s] $*"; }
ok() { passed=$((passed + 1)); echo "field-check: ok - $*"; }
fail() {
  failed=$((failed + 1))
  stop_demo
  echo "field-check: FAILED - $*" >&2
  echo "field-check: $passed passed, $failed failed"
  exit 1
}
# Run a command, keep its output in $WORK/logs/NAME.log, show the log if it fails.
run() {
  local name=$1; shift
  if ! "$@" >"$WORK/logs/$name.log" 2>&1; then
    tail -n 40 "$WORK/logs/$name.log" >&2
    fail "$name: \`$*\` exited non-zero (log above)"
  fi
}
mkdir -p "$WORK/logs" "$WORK/user"

# The demo needs only the checkout's environment (the README's `make demo`), not the wheel: start it first.
step "the README's demo command, make demo, with an empty PREFECT_HOME (in the background)"
# setsid: its own process group, so a failure elsewhere stops the demo and everything it started.
setsid env -u PREFECT_API_URL -u TUNEFLOW_DATA_ROOT -u PYTHONPATH PREFECT_HOME="$WORK/prefect-home-demo" \
  KERAS_HOME="$WORK/keras-demo" PREFECT_SERVER_ANALYTICS_ENABLED=false TF_CPP_MIN_LOG_LEVEL=2 \
  NO_PROXY=127.0.0.1,localhost make -C "$ROOT" demo DEMO_DATA_ROOT="$WORK/demo-data" >"$WORK/logs/demo.log" 2>&1 &
demo_pid=$!

# From a copy of the tree's files: pip builds in the source folder (build/, *.egg-info), and `make test` runs the
# test suite beside this, whose packaging test may be building a wheel there at the same moment.
step "building the wheel from $ROOT (a copy of its files)"
mkdir "$WORK/src"
tar -C "$ROOT" --exclude=./.venv --exclude=./data --exclude=./.git --exclude=./build --exclude='*.egg-info' -cf - . \
  | tar -C "$WORK/src" -xf - || fail "could not copy $ROOT to $WORK/src"
run wheel "$PYTHON" -m pip wheel --quiet --no-deps -w "$WORK/dist" "$WORK/src"
wheel=$(ls "$WORK"/dist/tuneflow-*.whl)
ok "built $(basename "$wheel")"

# uv resolves and installs the wheel's dependencies from the same registry as pip, from its cache in seconds where
# pip takes minutes to unpack TensorFlow again (the test extra installs it; UV names it).
UV="${UV:-uv}"
command -v "$UV" >/dev/null || fail "uv is needed to install the wheel quickly: pip install uv, or set UV=/path/to/uv"
step "installing it into a new virtual environment ($WORK/venv) with $("$UV" --version)"
run venv "$UV" venv --quiet --python "$PYTHON" "$WORK/venv"
run install "$UV" pip install --quiet --python "$WORK/venv/bin/python" "$wheel"
TUNEFLOW="$WORK/venv/bin/tuneflow"

# From here on: a user's folder, an empty Prefect home, the installed commands only.
cd "$WORK/user"
location=$("$WORK/venv/bin/python" -c 'import tuneflow; print(tuneflow.__file__)')
[[ "$location" == "$WORK/venv/"* ]] || fail "tuneflow imports from $location, not from the installed wheel"
ok "installed; tuneflow imports from $location"
export PREFECT_HOME="$WORK/prefect-home" KERAS_HOME="$WORK/keras" PREFECT_SERVER_ANALYTICS_ENABLED=false
export TF_CPP_MIN_LOG_LEVEL=2 NO_PROXY=127.0.0.1,localhost
# A user's machine writes .pyc files as modules are first imported (this CI machine sets PYTHONDONTWRITEBYTECODE,
# which would make every command compile TensorFlow again: 8 s more each); uv, unlike pip, compiles none at install.
unset PREFECT_API_URL TUNEFLOW_DATA_ROOT PYTHONPATH PYTHONDONTWRITEBYTECODE

step "tuneflow --help"
run help "$TUNEFLOW" --help
grep -q "retrain" "$WORK/logs/help.log" || fail "tuneflow --help does not list retrain"
ok "tuneflow --help"

step "tuneflow sample"
run sample "$TUNEFLOW" sample dataset.zip --images-per-class 10 --image-size 48
[[ -s dataset.zip ]] || fail "tuneflow sample wrote no dataset.zip"
ok "$(tail -n 1 "$WORK/logs/sample.log")"

# The first run on a machine where Prefect never ran: creating Prefect's database takes longer than its own 20 s
# startup timeout on a slow machine, and `tuneflow retrain` died of it (issue #11). A 1 s timeout stands in for
# such a machine: the run must wait for the first start, say what it waits for, and succeed.
step "tuneflow retrain (random weights, 32 px, 1 epoch) with an empty PREFECT_HOME and a 1 s Prefect startup timeout"
PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=1 run retrain "$TUNEFLOW" retrain --source dataset.zip \
  --weights none --image-size 32 --batch-size 8 --epochs 1 --data-root data
grep -q "^validation accuracy" "$WORK/logs/retrain.log" || fail "retrain printed no validation accuracy"
grep -q "first start: creating its database" "$WORK/logs/retrain.log" || fail "retrain did not say it waits for Prefect's first start"
grep -q "Prefect server ready after" "$WORK/logs/retrain.log" || fail "retrain did not say when Prefect was ready"
! grep -q "Timed out while attempting to connect" "$WORK/logs/retrain.log" || fail "Prefect's startup timed out"
[[ -L data/models/current ]] || fail "retrain left no data/models/current"
ok "$(grep "^validation accuracy" "$WORK/logs/retrain.log")"

step "tuneflow predict current on one of its validation photos"
photo=$(find data/runs/*/dataset/val -type f | sort | head -n 1)
[[ -n "$photo" ]] || fail "the run has no validation photos under data/runs/*/dataset/val"
run predict "$TUNEFLOW" predict current "$photo" --data-root data
grep -q "^\[('" "$WORK/logs/predict.log" || fail "predict printed no class probabilities"
ok "predict $(basename "$photo"): $(grep "^\[('" "$WORK/logs/predict.log" | cut -c1-80)..."

step "the deployments' entrypoints load from the installed package"
run entrypoints "$WORK/venv/bin/python" -c '
from prefect.flows import load_flow_from_entrypoint
for entrypoint in ("tuneflow.flows.retrain.retrain", "tuneflow.flows.watch_drive.watch_drive"):
    print(entrypoint, "->", load_flow_from_entrypoint(entrypoint, use_placeholder_flow=False).name)
'
ok "$(grep -- "->" "$WORK/logs/entrypoints.log" | tr '\n' ' ')"

step "waiting for make demo (started at the beginning)"
if ! wait "$demo_pid"; then
  demo_pid=
  tail -n 40 "$WORK/logs/demo.log" >&2
  fail "make demo exited non-zero (log above)"
fi
demo_pid=
grep -q "^demo: validation accuracy" "$WORK/logs/demo.log" || fail "make demo printed no validation accuracy"
tail -n 6 "$WORK/logs/demo.log"
ok "make demo"

echo
echo "field-check: $passed passed, $failed failed"
