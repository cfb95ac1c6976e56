// src/train/async_runner.cpp — see async_runner.h.
#include "train/async_runner.h"

#include "train/hogwild_runner.h"
#include "train/ps_trainer.h"
#include <paratorch/errors.h>

namespace paratorch::async {

train::TrainResult run_async(World& world, const train::Config& config, const std::string& resume_dir) {
  if (config.parallel.mode == "ps") return run_parameter_server(world, config, resume_dir);
  if (config.parallel.mode == "hogwild") return run_hogwild(world, config, resume_dir);
  throw UsageError("paratorch: [parallel] mode = \"" + config.parallel.mode + "\" has no asynchronous runner");
}

}  // namespace paratorch::async
