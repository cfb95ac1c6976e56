// src/train/async_layout.h — how a job's ranks are used in the asynchronous
// modes, and the checks that refuse a config that cannot run that way.
//
//   mode = "ps":      ranks [0, servers) are parameter servers, ranks
//                     [servers, world) are workers; each worker computes
//                     global_batch / workers samples per step.
//   mode = "hogwild": one process; [train] threads_per_rank threads share
//                     one parameter copy.
// Every check runs before any work starts (the CLI calls it before mpirun).
#pragma once
#include "train/config.h"

namespace paratorch::async {

/// UsageError naming the key when `config`'s asynchronous mode cannot run on
/// `world_size` ranks: servers >= world size, a global batch that does not
/// divide over the workers, pp/tp/zero > 1 with ps or hogwild, hogwild on
/// more than one rank. Does nothing for mode = "sync".
void check_async_layout(const train::Config& config, int world_size);

/// Workers of a ps job on `world_size` ranks.
inline int ps_workers(const train::Config& config, int world_size) { return world_size - config.parallel.servers; }

/// Hogwild's thread count: threads_per_rank, or 2 when that is 0 (auto).
int hogwild_threads(const train::Config& config);

}  // namespace paratorch::async
