// src/cli/train_command.cpp — `paratorch train --config F.toml [--set k=v ...]
// [--nproc N] [--resume DIR]`: load and check the config, start the ranks,
// run the Trainer, print the summary line (docs/training.md) last.
#include "train/async_layout.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/launcher.h"
#include "train/config.h"
#include "train/engine_options.h"
#include "train/trainer.h"

#include <paratorch/errors.h>
#include <paratorch/layout.h>
#include <paratorch/sampler.h>
#include <paratorch/world.h>

#include <cstdio>
#include <iostream>

namespace paratorch::cli {
namespace {

const std::vector<FlagSpec>& train_flags() {
  static const std::vector<FlagSpec> flags = {
      {"config", "F.toml", "the run's config (examples/configs/ has one per bundled model)"},
      {"set", "section.key=value", "override one config key (repeatable), e.g. --set optim.lr=1e-3"},
      {"nproc", "N", "start N ranks under mpirun on this machine"},
      {"resume", "DIR", "continue from a checkpoint: a step folder, or a run's out_dir (its latest)"},
      {"help", "", "show this help and every config key"},
  };
  return flags;
}

// Everything checkable without MPI, so a bad config fails before ranks start.
void check_layout_fits(const train::Config& config, int ranks) {
  if (config.parallel.mode != "sync") return async::check_async_layout(config, ranks);  // servers + workers
  const Layout layout = Layout{config.parallel.dp, config.parallel.pp, config.parallel.tp}.resolve(ranks);
  DistributedSampler(config.data.global_batch, 0, layout.dp);  // global_batch must divide over dp
  train::check_pipeline_config(config, layout);                // pp > 1: schedule, micro-batches, blocks
}

}  // namespace

int run_train(int& argc, char**& argv, const std::vector<std::string>& argl) {
  Args args("train", train_flags(), argl);
  if (args.has("help")) {
    std::cout << "usage: paratorch train --config F.toml [--set section.key=value ...] [--nproc N] [--resume DIR]\n\n"
                 "Trains a bundled model in the config's layout. Writes metrics.jsonl, loss.svg,\n"
                 "trace.json and checkpoints/ into [train] out_dir; the last line on stdout is\n"
                 "  train: steps=N final_loss=X mean_step_ms=Y throughput=Z unit=... peak_rss_mb=W\n\n"
              << format_flags(train_flags()) << "\n"
              << train::config_reference() << "\nReference: docs/config.md\n";
    return 0;
  }
  if (!args.has("config"))
    throw UsageError("paratorch train: --config F.toml is required (see examples/configs/, or --help)");
  train::Config config = train::load_config(*args.get("config"), args.all("set"));
  WorldOptions world_options;
  world_options.threads_per_rank = config.train.threads_per_rank;
  world_options.comm.timeout_s = config.comm.timeout_s;
  world_options.flight.dump_dir = config.train.out_dir + "/flight";  // docs/faults.md
  world_options.flight.report_on_sigterm = true;
  world_options.validate();
  const int ranks = under_mpi_launcher() ? launcher_world_size() : static_cast<int>(args.get_int("nproc", 1));
  if (ranks >= 1) check_layout_fits(config, ranks);
  // Asynchronous parameter-server jobs survive a worker's death: only the
  // servers are required ranks (docs/async.md, "Faults").
  LaunchOptions launch;
  if (config.parallel.mode == "ps" && config.parallel.staleness != 0) launch.required_ranks = config.parallel.servers;
  maybe_relaunch("train", argl, launch);

  World world(argc, argv, world_options);
  train::Trainer trainer(world, config);
  const train::TrainResult result = trainer.run(args.get_or("resume", ""));
  if (world.rank() == 0) {
    std::printf("%s\n", result.summary_line().c_str());
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace paratorch::cli
