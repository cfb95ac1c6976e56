#!/usr/bin/env bash
# consumer_test.sh SRC BUILD install
#   installs paratorch into BUILD/install-test (the package every example uses).
# consumer_test.sh SRC BUILD example NAME NP [ARGS...]
#   builds examples/NAME as a separate CMake project against that installed
#   package (find_package(paratorch)) and runs it on NP ranks.
# Proves that install/export works for a real consumer, and that each example
# needs nothing but the installed headers.
set -euo pipefail
src=$1 build=$2 what=$3
prefix=$build/install-test
case "$what" in
  install)
    rm -rf "$prefix"
    cmake --install "$build" --prefix "$prefix" > /dev/null
    ;;
  example)
    name=$4 np=$5; shift 5
    [ -f "$prefix/include/paratorch/verify.h" ] || { echo "consumer_test: run the install.package test first"; exit 1; }
    work=$build/consumer-$name
    rm -rf "$work"
    cmake -S "$src/examples/$name" -B "$work" -G Ninja -DCMAKE_BUILD_TYPE=Release \
          -DCMAKE_PREFIX_PATH="$prefix" > "$work.configure.log" 2>&1 || { cat "$work.configure.log"; exit 1; }
    cmake --build "$work" > "$work.build.log" 2>&1 || { cat "$work.build.log"; exit 1; }
    mpirun -np "$np" "$work/$name" "$@"
    ;;
  *) echo "consumer_test: unknown step '$what' (install | example)"; exit 99 ;;
esac
