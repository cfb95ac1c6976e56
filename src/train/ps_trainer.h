// src/train/ps_trainer.h — `paratorch train` with [parallel] mode = "ps"
// and staleness != 0 (stale-synchronous or asynchronous). Staleness 0 steps
// every rank together and runs the Trainer's own loop over PsEngine
// (ps_engine.h), the path `verify` checks.
//
// The synchronous Trainer steps every rank together; an SSP or asynchronous
// parameter-server job does not: workers (ranks [S, N)) compute at their own
// pace within the staleness bound (ps_server.h), and the servers (ranks
// [0, S)) serve them. The servers follow the run's global steps in order,
// so they run the training loop every mode runs (run_loop.h), server 0
// writing the lines: ps_server_runner.h says what a step is there.
//
// With staleness > 0 worker w computes, at its step t, the w-th of W slices
// of global batch t (DistributedSampler). With staleness -1 server 0 hands
// out those slices one pull at a time (ServerOptions::assign_slots), so fast
// workers take more of them than a straggler. Either way the job processes
// steps x global_batch samples, the synchronous run's samples.
//
// Outputs (rank 0 = server 0), as every mode's: metrics.jsonl with a line
// per log_every global steps, mid-run validations, loss.svg, trace.json;
// the last line adds the staleness histogram, per-worker steps/s, per-server
// apply rates and lost_workers; server checkpoints in
// <out_dir>/checkpoints/server-K/. final_loss in the summary line is the
// validation loss of the final parameters.
//
// Injected faults (ps_faults.h), for tests and bench/async_compare:
//   PARATORCH_PS_STRAGGLER=RANK:FACTOR  that worker computes FACTOR x slower
//                                       (sleeps (FACTOR-1) x its compute time per step)
//   PARATORCH_PS_KILL=RANK:STEP         that worker stops dead before STEP
//                                       (sends nothing more, as if it had died)
//   PARATORCH_PS_CRASH=RANK:N           that rank's PROCESS dies (SIGKILL): a worker
//                                       after N steps, a server after N pushes received
//
// Under `--nproc`, an asynchronous or SSP job survives a worker process's
// death: cli/survivable_launch.h (mpirun --enable-recovery; the servers are
// the required ranks).
#pragma once
#include "train/config.h"
#include "train/trainer.h"
#include <paratorch/world.h>

#include <string>

namespace paratorch::async {

/// Runs the whole job on every rank; the result is complete on rank 0.
train::TrainResult run_parameter_server(World& world, const train::Config& config, const std::string& resume_dir);

}  // namespace paratorch::async
