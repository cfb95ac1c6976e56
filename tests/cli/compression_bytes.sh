#!/usr/bin/env bash
# compression_bytes.sh PARATORCH OUT ARGS... — `paratorch train ARGS` at
# dp = 2 once per [parallel] compression, and each one's comm_bytes at its
# last step (compressing by then) against the uncompressed run's: 16-bit
# values send half, 1-bit Adam about 1/32 (1 bit per value plus scales),
# PowerSGD (rank 1, this small mlp) under 1/20. Prints "compression_bytes: ok".
set -u
pt=$1 out=$2; shift 2
mkdir -p "$out"
declare -A bytes
for c in none bf16 fp16 powersgd onebit_adam; do
  rm -rf "$out/$c"
  "$pt" train --nproc 2 "$@" --set parallel.compression="\"$c\"" --set train.out_dir="\"$out/$c\"" > "$out/$c.log" 2>&1 ||
    { echo "FAIL: $c: train failed"; tail -5 "$out/$c.log"; exit 1; }
  bytes[$c]=$(tail -1 "$out/$c/metrics.jsonl" | grep -oE '"comm_bytes":[0-9.e+]+' | cut -d: -f2)
  [ -n "${bytes[$c]}" ] || { echo "FAIL: $c: no comm_bytes in metrics.jsonl"; exit 1; }
done
fail=0
check() {  # check NAME LO HI
  local r; r=$(awk -v a="${bytes[$1]}" -v b="${bytes[none]}" 'BEGIN {printf "%.5f", a / b}')
  if awk -v r="$r" -v lo="$2" -v hi="$3" 'BEGIN {exit !(r >= lo && r <= hi)}'; then echo "$1: $r of none"
  else echo "FAIL: $1 sends $r of the uncompressed bytes, expected $2..$3"; fail=1; fi
}
check bf16 0.4999 0.5001
check fp16 0.4999 0.5001
check onebit_adam 0.0303 0.0323
check powersgd 0.001 0.05
[ "$fail" -eq 0 ] && echo "compression_bytes: ok"
exit $fail
