// src/train/async_runner.h — the entry the Trainer hands [parallel] mode
// "ps" with staleness != 0 and "hogwild" to (their ranks do not step
// together, so they have their own loops: ps_trainer.h, hogwild.h). The
// bulk-synchronous ps (staleness 0) runs the Trainer's loop over PsEngine.
#pragma once
#include "train/config.h"
#include "train/trainer.h"
#include <paratorch/world.h>

#include <string>

namespace paratorch::async {

/// Runs `config` (mode "ps" with staleness != 0, or "hogwild") on every rank; the result is complete on rank 0.
train::TrainResult run_async(World& world, const train::Config& config, const std::string& resume_dir);

}  // namespace paratorch::async
