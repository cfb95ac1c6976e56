#!/usr/bin/env bash
# same_step.sh METRICS_A METRICS_B STEP — checks that metrics.jsonl files A and
# B logged the same loss and grad_norm at STEP (1e-5 relative): a run resumed
# in another layout continues exactly as the uninterrupted one.
set -u
a="$1" b="$2" step="$3"
field() {  # field FILE NAME -> the number logged under NAME at STEP
  grep -E "\"step\":${step}[,}]" "$1" | tail -1 | grep -oE "\"$2\":[-0-9.eE+]+" | cut -d: -f2
}
fail=0
for name in loss grad_norm; do
  x=$(field "$a" "$name"); y=$(field "$b" "$name")
  echo "step $step $name: $x (A) vs $y (B)"
  [ -n "$x" ] && [ -n "$y" ] || { echo "FAIL: step $step $name missing"; fail=1; continue; }
  awk -v x="$x" -v y="$y" 'BEGIN { d = x - y; if (d < 0) d = -d; m = (y < 0 ? -y : y); exit !(d <= 1e-5 * (m > 1e-12 ? m : 1e-12)) }' ||
    { echo "FAIL: step $step $name differs by more than 1e-5 relative"; fail=1; }
done
exit $fail
