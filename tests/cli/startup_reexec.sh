#!/usr/bin/env bash
# startup_reexec.sh PARATORCH: the napping defaults (docs/launching.md) reach
# every process that computes, and only those pay the re-execution that
# applies them. Counts each start of the binary (a successful execve) under
# strace, with the variables unset:
#   launch       a launcher (--nproc 2 outside mpirun): it starts once and
#                exports the defaults, so each rank starts once, with them;
#   one_process  a run in this process: it starts, then re-executes with them;
#   help         no computation: one start.
# Exits 77 (skip) where strace cannot trace (not installed, ptrace refused).
set -euo pipefail
pt=$(readlink -f "$1")
if ! strace -f -qq -o /dev/null true 2> /dev/null; then
  echo "startup_reexec: strace cannot trace here (not installed or ptrace not allowed)"
  exit 77
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
count() {  # count NAME ARGS...: starts of the binary and how many carried the defaults
  local name=$1
  shift
  rm -f "$dir"/trace.*
  # -ff: a file per process, so no execve line is split by another's.
  env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT -u OPENBLAS_THREAD_TIMEOUT \
    strace -ff -qq -v -s 4096 -e trace=execve -e signal=none -o "$dir/trace" "$pt" "$@" > /dev/null
  local starts with
  starts=$(cat "$dir"/trace.* | grep -c "^execve(\"$pt\", .* = 0\$" || true)
  with=$(cat "$dir"/trace.* | grep "^execve(\"$pt\", .* = 0\$" | grep 'OMP_WAIT_POLICY=passive' |
    grep -c 'OPENBLAS_THREAD_TIMEOUT=16' || true)
  echo "$name: starts=$starts with_defaults=$with"
}
count launch verify --model mlp --layout dp=2 --steps 1 --nproc 2
count one_process verify --model mlp --layout dp=1 --steps 1
count help verify --help
