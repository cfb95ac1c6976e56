#!/usr/bin/env bash
# checkpoint_crash.sh OUT PARATORCH TRAIN_ARGS...
# A rank killed in the middle of a sharded save (PARATORCH_CHECKPOINT_CRASH:
# after its shard of step 4 is written, before the commit) must leave the
# previous checkpoint in charge: the job fails, `latest` still names
# step-000002, the half-written step-000004.tmp-* folder has no index.json,
# and a resume from OUT continues at step 2, finishes, replaces the leftover
# and moves `latest` to step-000004.
set -u
out=$1 pt=$2; shift 2
rm -rf "$out"
PARATORCH_CHECKPOINT_CRASH=1:4 "$pt" train "$@" --set train.out_dir="$out" --set train.steps=4 --nproc 2 >"$out.log" 2>&1
rc=$?
tail -3 "$out.log"
[ "$rc" -ne 0 ] || { echo "FAIL: the job whose rank 1 was killed mid-save exited 0"; exit 1; }
latest=$(cat "$out/checkpoints/latest")
[ "$latest" = step-000002 ] || { echo "FAIL: latest names '$latest', not step-000002"; exit 1; }
half=$(ls -d "$out"/checkpoints/step-000004.tmp-* 2>/dev/null | head -1)
[ -n "$half" ] || { echo "FAIL: no half-written step-000004.tmp-* folder: the crash came too late to test anything"; exit 1; }
[ ! -e "$half/index.json" ] || { echo "FAIL: the half-written folder has an index"; exit 1; }
ls "$half"/shard-* >/dev/null 2>&1 || { echo "FAIL: the half-written folder holds no shard (the crash came too early)"; exit 1; }
echo "after the crash: latest=$latest, $(basename "$half") holds $(ls "$half" | tr '\n' ' ')"
"$pt" train "$@" --set train.out_dir="$out" --set train.steps=4 --nproc 2 --resume "$out" 2>&1 | grep -E "resumed from|^train:" || {
  echo "FAIL: the resume did not run"; exit 1; }
[ "$(cat "$out/checkpoints/latest")" = step-000004 ] || { echo "FAIL: latest did not move to step-000004"; exit 1; }
[ -z "$(ls -d "$out"/checkpoints/*.tmp-* 2>/dev/null)" ] || { echo "FAIL: the leftover .tmp folder is still there"; exit 1; }
echo "PASS: the previous checkpoint stayed in charge and the resume replaced the leftover"
