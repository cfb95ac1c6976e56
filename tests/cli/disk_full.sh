#!/usr/bin/env bash
# disk_full.sh DIR PARATORCH TRAIN_ARGS...
# Runs `paratorch train TRAIN_ARGS --set train.out_dir=DIR/run` with DIR a
# 64 KiB tmpfs (in a private mount namespace), too small for the first
# checkpoint. Expects a runtime failure (exit 1) saying the device is full,
# and no step-N.tmp-PID folder (nor any *.tmp* file) left behind.
# Exits 77 (skipped) where a tmpfs cannot be mounted (not root, no unshare).
set -u
dir=$1; shift
if [ "${DISK_FULL_INNER:-}" != 1 ]; then
  mkdir -p "$dir"
  if ! unshare -m true 2>/dev/null; then
    echo "SKIP: cannot create a mount namespace (unshare -m needs root or CAP_SYS_ADMIN)"; exit 77
  fi
  DISK_FULL_INNER=1 exec unshare -m bash "$0" "$dir" "$@"
fi
if ! mount -t tmpfs -o size=64k tmpfs "$dir" 2>/dev/null; then
  echo "SKIP: cannot mount a tmpfs on $dir"; exit 77
fi
out=$("$@" --set train.out_dir="$dir/run" 2>&1); rc=$?
echo "$out"
echo "--- exit code $rc; left in the checkpoints folder:"
ls -a "$dir/run/checkpoints" 2>&1
leftovers=$(find "$dir" -name '*.tmp*')
[ "$rc" -eq 1 ] || { echo "FAIL: expected exit code 1 (runtime failure), got $rc"; exit 1; }
echo "$out" | grep -q "No space left on device" || { echo "FAIL: the message does not say the device is full"; exit 1; }
[ -z "$leftovers" ] || { echo "FAIL: a failed checkpoint write left behind: $leftovers"; exit 1; }
echo "PASS: the failed checkpoint left nothing behind"
