#!/usr/bin/env bash
# flight_then_inspect.sh PROBE PARATORCH MODE NP REGEX...
# Runs tests/comm/fault_probe.cpp's MODE on NP ranks with a 2 s deadline and
# the flight records going to a fresh folder, expects the job to fail, then
# runs `paratorch inspect` on the folder and checks its output matches every
# REGEX (expect.sh). The folder is removed afterwards.
set -u
probe="$1"; paratorch="$2"; mode="$3"; np="$4"; shift 4
here="$(cd "$(dirname "$0")/.." && pwd)"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
PARATORCH_FLIGHT_DIR="$dir" timeout 60 mpirun -np "$np" "$probe" "$mode" 2 > "$dir/job.log" 2>&1
rc=$?
echo "--- the job (exit code $rc):"; grep -v '^\s*$' "$dir/job.log" | grep -v -- '^---' | tail -n 6
[ "$rc" -ne 0 ] || { echo "FAIL: the job was expected to fail"; exit 1; }
args=()
for re in "$@"; do args+=(--match "$re"); done
bash "$here/expect.sh" --rc 0 "${args[@]}" -- "$paratorch" inspect "$dir"
