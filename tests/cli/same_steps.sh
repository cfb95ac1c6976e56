#!/usr/bin/env bash
# same_steps.sh METRICS_A METRICS_B FIRST LAST [exact] — checks that metrics.jsonl
# files A (the uninterrupted run) and B (the run resumed from a checkpoint,
# written to its own folder) logged the same loss and the same pre-clip
# grad_norm at EVERY step FIRST..LAST, 1e-5 relative: a run resumed in an
# equivalent layout continues exactly as the uninterrupted one. A step missing
# from either file, or logged more than once, fails (the runs must log every
# step: train.log_every = 1). With "exact" the logged numbers must be the
# same text (bit for bit: the runs' arithmetic is the same). Prints
# "same_steps: steps FIRST..LAST equal" on success only.
set -u
[ $# -eq 4 ] || [ $# -eq 5 ] || { echo "usage: same_steps.sh METRICS_A METRICS_B FIRST LAST [exact]"; exit 2; }
a="$1" b="$2" first="$3" last="$4" exact="${5:-}"
[ "$first" -ge 1 ] && [ "$last" -ge "$first" ] || { echo "FAIL: empty step range $first..$last"; exit 2; }
for f in "$a" "$b"; do [ -s "$f" ] || { echo "FAIL: $f is missing or empty"; exit 1; }; done
lines() { grep -E "\"step\":$2[,}]" "$1"; }  # lines FILE STEP -> that step's lines
field() { echo "$1" | grep -oE "\"$2\":[-0-9.eE+]+" | cut -d: -f2; }  # field LINE NAME
fail=0 compared=0
for ((step = first; step <= last; ++step)); do
  la=$(lines "$a" "$step"); lb=$(lines "$b" "$step")
  na=$(printf '%s' "$la" | grep -c .); nb=$(printf '%s' "$lb" | grep -c .)
  if [ "$na" -ne 1 ] || [ "$nb" -ne 1 ]; then
    echo "FAIL: step $step is logged $na time(s) in A and $nb time(s) in B, not once each"; fail=1; continue
  fi
  for name in loss grad_norm; do
    x=$(field "$la" "$name"); y=$(field "$lb" "$name")
    [ -n "$x" ] && [ -n "$y" ] || { echo "FAIL: step $step has no $name in A or B"; fail=1; continue; }
    if [ "$exact" = exact ]; then
      if [ "$x" = "$y" ]; then echo "step $step $name: $x (A) $y (B)"; compared=$((compared + 1))
      else echo "FAIL: step $step $name: $x (A) vs $y (B) are not the same bits"; fail=1; fi
    elif awk -v x="$x" -v y="$y" 'BEGIN { d = x - y; if (d < 0) d = -d; m = (y < 0 ? -y : y);
                                       exit !(d <= 1e-5 * (m > 1e-12 ? m : 1e-12)) }'; then
      echo "step $step $name: $x (A) $y (B)"; compared=$((compared + 1))
    else
      echo "FAIL: step $step $name: $x (A) vs $y (B) differ by more than 1e-5 relative"; fail=1
    fi
  done
done
[ "$compared" -eq $((2 * (last - first + 1))) ] || fail=1
[ "$fail" -eq 0 ] && echo "same_steps: steps $first..$last equal"
exit $fail
