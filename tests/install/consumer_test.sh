#!/usr/bin/env bash
# Installs paratorch into a scratch prefix, builds examples/ddp_basic as a
# separate project against that installed package (find_package(paratorch)),
# and runs it on 2 ranks. Proves install/export works for a real consumer.
set -euo pipefail
src=$1 build=$2
prefix=$build/install-test
work=$build/consumer-ddp_basic
rm -rf "$prefix" "$work"
cmake --install "$build" --prefix "$prefix" > /dev/null
cmake -S "$src/examples/ddp_basic" -B "$work" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$prefix" > "$work.configure.log" 2>&1 || { cat "$work.configure.log"; exit 1; }
cmake --build "$work" > "$work.build.log" 2>&1 || { cat "$work.build.log"; exit 1; }
mpirun -np 2 "$work/ddp_basic"
