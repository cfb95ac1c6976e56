#!/usr/bin/env bash
# tests/parallel/async/ps_run_lines.sh METRICS WORKERS STEPS VALIDATION_STEP
#
# Checks the metrics.jsonl of an SSP or asynchronous parameter-server run,
# which server 0 writes through the training loop (src/train/ps_server_runner.h):
#   - lines in step order, none twice, the first step logged;
#   - each line but the last written once its global step is done: server 0
#     has applied at least WORKERS x step pushes by then;
#   - the line of VALIDATION_STEP carries a measured val_loss (not null);
#   - the last line is step STEPS with lost_workers, and its val_loss (the
#     servers' rows joined into the final parameters) is within 1.5x of its
#     training loss: one server's rows with the others' initial values
#     validate far worse.
# Prints what it found; exits 1 on the first broken rule.
set -euo pipefail
metrics=$1 workers=$2 steps=$3 validation_step=$4
[[ -s $metrics ]] || { echo "FAIL: no $metrics"; exit 1; }
awk -v workers="$workers" -v steps="$steps" -v vstep="$validation_step" '
function field(key,   m) {
  if (!match($0, "\"" key "\":[^,}]*")) return "";
  m = substr($0, RSTART, RLENGTH); sub(/^[^:]*:/, "", m); return m;
}
{
  step = field("step") + 0; applied = field("applied_updates") + 0; n++;
  if (n == 1 && step != 1) { printf "FAIL: the first line is step %d, not 1\n", step; exit 1 }
  if (step <= last) { printf "FAIL: step %d after step %d\n", step, last; exit 1 }
  last = step;
  if (step < steps && applied < workers * step) {
    printf "FAIL: step %d logged after %d applied updates, before its %d pushes were done\n", step, applied, workers * step; exit 1
  }
  if (step == vstep) {
    v = field("val_loss");
    if (v == "" || v == "null") { printf "FAIL: the line of step %d has no measured val_loss (%s)\n", step, v; exit 1 }
    seen_validation = 1;
  }
  final_line = $0;
}
END {
  if (!seen_validation) { printf "FAIL: no line for step %d\n", vstep; exit 1 }
  $0 = final_line;
  if (field("step") + 0 != steps || field("lost_workers") == "") { print "FAIL: the last line is not step " steps " with lost_workers: " $0; exit 1 }
  loss = field("loss") + 0; val = field("val_loss") + 0;
  if (!(val > 0 && val < 1.5 * loss)) { printf "FAIL: final val_loss %g against training loss %g\n", val, loss; exit 1 }
  printf "PASS: %d lines in step order, each after its pushes; val_loss at step %d; final val_loss %.4f, training loss %.4f\n", n, vstep, val, loss;
}' "$metrics"
