#!/usr/bin/env bash
# expect.sh --rc N|nonzero [--match REGEX]... [--absent REGEX]... [--max-seconds S] -- COMMAND...
# Runs COMMAND and checks its exit code, that its combined output matches
# every --match REGEX and none of the --absent ones (extended, over the whole
# output joined into one line), and that it ended within S seconds: at S
# seconds COMMAND's process group gets SIGTERM (then SIGKILL 10 s later), so a
# hang fails here with the output so far instead of at CTest's timeout with
# none. CTest's PASS_REGULAR_EXPRESSION would ignore the exit code; this
# checks both.
set -u
rc_want="" ; max_s="" ; matches=() ; absents=()
while [ $# -gt 0 ]; do
  case "$1" in
    --rc) rc_want="$2"; shift 2 ;;
    --match) matches+=("$2"); shift 2 ;;
    --absent) absents+=("$2"); shift 2 ;;
    --max-seconds) max_s="$2"; shift 2 ;;
    --) shift; break ;;
    *) echo "expect.sh: unknown option $1"; exit 99 ;;
  esac
done
start_ms=$(( $(date +%s%N) / 1000000 ))
if [ -n "$max_s" ]; then
  out=$(timeout --kill-after=10 "$max_s" "$@" 2>&1); rc=$?
else
  out=$("$@" 2>&1); rc=$?
fi
elapsed_ms=$(( $(date +%s%N) / 1000000 - start_ms ))
elapsed="$((elapsed_ms / 1000)).$(printf %03d $((elapsed_ms % 1000)))"
echo "$out"
echo "--- expect.sh: rc=$rc elapsed=${elapsed}s"
fail=0
if [ "$rc_want" = "nonzero" ]; then
  [ "$rc" -ne 0 ] || { echo "FAIL: expected a non-zero exit code"; fail=1; }
elif [ -n "$rc_want" ] && [ "$rc" -ne "$rc_want" ]; then
  echo "FAIL: expected exit code $rc_want, got $rc"; fail=1
fi
flat=$(echo "$out" | tr '\n' ' ')
for m in "${matches[@]}"; do
  echo "$flat" | grep -Eq -- "$m" || { echo "FAIL: output does not match /$m/"; fail=1; }
done
for m in "${absents[@]}"; do
  echo "$flat" | grep -Eq -- "$m" && { echo "FAIL: output matches /$m/, which it must not"; fail=1; }
done
if [ -n "$max_s" ] && [ "$elapsed_ms" -gt $((max_s * 1000)) ]; then
  echo "FAIL: took ${elapsed}s, more than ${max_s}s"; fail=1
fi
exit $fail
