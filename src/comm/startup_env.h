// src/comm/startup_env.h — the napping defaults of world.h for a program that
// decides per run whether it computes: a launcher that only starts other
// processes skips the re-execution (start_with_napping_compute_threads) and
// hands the defaults to its children through its environment instead.
#pragma once

namespace paratorch {

/// Adds each napping default missing from this process's environment
/// (OMP_WAIT_POLICY=passive unless it or GOMP_SPINCOUNT is set,
/// OPENBLAS_THREAD_TIMEOUT=16 unless set), so the processes it starts next
/// begin with them and need not re-execute. This process's own libraries
/// have read their settings already; only its children are affected.
void export_napping_defaults();

}  // namespace paratorch
