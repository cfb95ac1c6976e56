#!/usr/bin/env bash
# cluster_case.sh EXPECT_ARGS... -- scripts/cluster run ...: one multi-host
# case. Skips (exit 77, CTest's SKIP_RETURN_CODE) with the reason when this
# machine cannot build namespace hosts; otherwise runs tests/expect.sh.
here=$(cd "$(dirname "$0")" && pwd)
if ! why=$("$here/../../scripts/cluster" check); then
  echo "$why"
  exit 77
fi
exec bash "$here/../expect.sh" "$@"
