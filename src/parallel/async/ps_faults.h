// src/parallel/async/ps_faults.h — the parameter server's injected faults, read from
// the environment (for tests and bench/async_compare; docs/async.md):
//   PARATORCH_PS_STRAGGLER=RANK:FACTOR  that worker computes FACTOR x slower
//   PARATORCH_PS_KILL=RANK:STEP         that worker stops dead before STEP
//   PARATORCH_PS_CRASH=RANK:N           that rank's process dies (SIGKILL)
// Both ps paths read them here: the asynchronous runner (ps_trainer.h)
// honours all three, the bulk-synchronous engine (ps_engine.h) the
// straggler (a lost worker ends a bulk-synchronous job anyway).
#pragma once
#include <cstdint>

namespace paratorch::async {

struct Injection {
  int straggler_rank = -1;
  double factor = 1;
  int kill_rank = -1;
  int64_t kill_step = -1;
  int crash_rank = -1;
  int64_t crash_step = -1;
};

/// The variables above; UsageError naming one that is not RANK:VALUE.
Injection read_injection();

}  // namespace paratorch::async
