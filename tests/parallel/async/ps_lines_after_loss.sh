#!/usr/bin/env bash
# tests/parallel/async/ps_lines_after_loss.sh METRICS VALIDATION_STEP LATER_STEP
#
# For an SSP run whose validating worker (share 0) was lost before
# VALIDATION_STEP: server 0's loop must not wait for that validation until
# the survivors are done. Checks that the line of VALIDATION_STEP has no
# val_loss, and that the line of LATER_STEP was written
# while the job still ran: fewer updates applied than the last line's.
set -euo pipefail
metrics=$1 vstep=$2 later=$3
[[ -s $metrics ]] || { echo "FAIL: no $metrics"; exit 1; }
awk -v vstep="$vstep" -v later="$later" '
function field(key,   m) {
  if (!match($0, "\"" key "\":[^,}]*")) return "";
  m = substr($0, RSTART, RLENGTH); sub(/^[^:]*:/, "", m); return m;
}
{ step = field("step") + 0; applied[step] = field("applied_updates") + 0; last = step; if (step == vstep) val = field("val_loss") }
END {
  if (!(vstep in applied) || !(later in applied)) { print "FAIL: no line for step " vstep " or " later; exit 1 }
  if (val != "") { print "FAIL: step " vstep " has val_loss " val ", from a lost worker?"; exit 1 }
  if (applied[later] >= applied[last]) {
    printf "FAIL: step %d logged after %d updates, as many as the last line (%d): the loop waited for the lost validation\n", later, applied[later], applied[last]; exit 1
  }
  printf "PASS: step %d without val_loss; step %d logged at %d of %d updates\n", vstep, later, applied[later], applied[last]
}' "$metrics"
