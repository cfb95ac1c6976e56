#!/usr/bin/env bash
# consumer_test.sh SRC BUILD install
#   installs paratorch into BUILD/install-test and builds every example in
#   SRC/examples/ against it (find_package(paratorch); each example is a
#   standalone project: tests/install/examples/ only builds them together).
# consumer_test.sh SRC BUILD example NAME NP [ARGS...]
#   runs that build of examples/NAME on NP ranks.
# consumer_test.sh SRC BUILD cluster NAME HOSTS RANKS_PER_HOST [ARGS...]
#   runs it across HOSTS namespace hosts (scripts/cluster); exits 77 (skip)
#   where namespaces are not allowed.
# Proves that install/export works for real consumers, and that each example
# needs nothing but the installed headers.
set -euo pipefail
src=$1 build=$2 what=$3
prefix=$build/install-test
work=$build/consumer-examples
case "$what" in
  install)
    rm -rf "$prefix" "$work"
    cmake --install "$build" --prefix "$prefix" > /dev/null
    # The examples build with the system's default compiler (c++; g++ on
    # Debian), whichever compiler built the package, as a user's project
    # would: the installed headers are then compiled by a second compiler.
    cmake -S "$src/tests/install/examples" -B "$work" -G Ninja -DCMAKE_BUILD_TYPE=Release \
          -DCMAKE_PREFIX_PATH="$prefix" -DEXAMPLES_DIR="$src/examples" > "$work.configure.log" 2>&1 ||
      { cat "$work.configure.log"; exit 1; }
    cmake --build "$work" > "$work.build.log" 2>&1 || { cat "$work.build.log"; exit 1; }
    echo "consumer_test: installed to $prefix; built $(ls "$src/examples" | grep -v configs | tr '\n' ' ')"
    ;;
  example)
    name=$4 np=$5; shift 5
    [ -x "$work/$name/$name" ] || { echo "consumer_test: $work/$name/$name is missing; run the install.package test first"; exit 1; }
    mpirun -np "$np" "$work/$name/$name" "$@"
    ;;
  cluster)
    name=$4 hosts=$5 per=$6; shift 6
    [ -x "$work/$name/$name" ] || { echo "consumer_test: $work/$name/$name is missing; run the install.package test first"; exit 1; }
    why=$("$src/scripts/cluster" check) || { echo "$why"; exit 77; }
    PARATORCH="$work/$name/$name" "$src/scripts/cluster" run --hosts "$hosts" --ranks-per-host "$per" -- "$@"
    ;;
  *) echo "consumer_test: unknown step '$what' (install | example | cluster)"; exit 99 ;;
esac
