#!/usr/bin/env bash
# `make test`: the whole test suite and, beside it, the field check (scripts/field_check.sh: the wheel installed
# outside the checkout and run as a user would, and `make demo`). Both are mostly one core's work at a time
# (TensorFlow tracing ResNet50) with waits between (servers, processes), so run together on two cores they finish
# sooner than one after the other. The field check's output is printed after the tests'; the exit status is
# non-zero if either failed.
#   usage: scripts/test_with_field_check.sh PYTEST_ARGS...   (BIN: the environment's bin folder, default .venv/bin)
set -uo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${BIN:-$ROOT/.venv/bin}"
log="$(mktemp "${TMPDIR:-/tmp}/tuneflow-field-check-log.XXXXXX")"
field_pid=
# setsid: the field check leads its own process group, so an interrupted `make test` stops it and what it started.
stop_field_check() { [[ -n "$field_pid" ]] && kill -TERM -- "-$field_pid" 2>/dev/null; field_pid=; }
trap 'stop_field_check; rm -f "$log"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

setsid env PYTHON="${PYTHON:-python3}" UV="${UV:-$BIN/uv}" "$ROOT/scripts/field_check.sh" >"$log" 2>&1 &
field_pid=$!
echo "field check started beside the tests (its output follows theirs)"

"$BIN/python" -m pytest "$@"
tests=$?

wait "$field_pid"
checked=$?
field_pid=
echo
cat "$log"
echo
outcome() { [[ $1 == 0 ]] && echo passed || echo "FAILED (exit $1)"; }
echo "make test: pytest $(outcome "$tests"), field check $(outcome "$checked")"
[[ $tests == 0 && $checked == 0 ]]
