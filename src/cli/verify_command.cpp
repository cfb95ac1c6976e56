// src/cli/verify_command.cpp — `paratorch verify`: does a layout reproduce the
// single-process run?
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/launcher.h"
#include "train/config.h"
#include "verify/equivalence.h"

#include <paratorch/compat.h>
#include <paratorch/errors.h>
#include <paratorch/sampler.h>
#include <paratorch/world.h>

#include <cstdio>
#include <iostream>

namespace paratorch::cli {
namespace {

const std::vector<FlagSpec>& verify_flags() {
  static const std::vector<FlagSpec> flags = {
      {"model", "NAME", "bundled model to check: gpt | mlp (small shapes)"},
      {"config", "F.toml", "take model, layout, global batch, seed and buckets from a train config"},
      {"layout", "dp=A,pp=B,tp=C", "layout to check (default dp=auto)"},
      {"steps", "K", "optimizer steps to compare (default 3)"},
      {"global-batch", "B", "samples per step, whole job (default 16)"},
      {"seed", "S", "global seed (default 1234)"},
      {"bucket-mb", "MB", "DDP bucket size in MiB (default 25)"},
      {"optim", "NAME", "sgd (momentum 0.9, default) | adamw (see docs/verify.md)"},
      {"lr", "LR", "learning rate (default 0.01)"},
      {"timeout-s", "S", "deadline of every collective/receive in seconds (default 300)"},
      {"nproc", "N", "start N ranks under mpirun on this machine"},
      {"help", "", "show this help"},
  };
  return flags;
}

}  // namespace

int run_verify(int& argc, char**& argv, const std::vector<std::string>& argl) {
  Args args("verify", verify_flags(), argl);
  if (args.has("help")) {
    std::cout << "usage: paratorch verify (--model NAME | --config F.toml) [--layout dp=A,pp=B,tp=C] [--steps K] [--nproc N]\n\n"
                 "Runs the layout and the single-process reference on the same global batches\n"
                 "and compares losses and final parameters (1e-5 relative).\n\n"
              << format_flags(verify_flags());
    return 0;
  }
  verify::VerifyOptions options;
  if (args.has("model") == args.has("config"))
    throw UsageError("paratorch verify: give exactly one of --model NAME (gpt | mlp) or --config F.toml");
  if (args.has("config")) {  // the config's model in its own layout; flags below still override
    const train::Config config = train::load_config(*args.get("config"), {});
    if (config.model.name != "gpt" && config.model.name != "mlp")
      throw UsageError("paratorch verify: model \"" + config.model.name +
                       "\" cannot be verified yet (verify runs gpt and mlp on synthetic data)");
    options.model = config.model;
    options.layout = Layout{config.parallel.dp, config.parallel.pp, config.parallel.tp};
    options.global_batch = config.data.global_batch;
    options.seed = static_cast<uint64_t>(config.train.seed);
    options.bucket_mb = config.parallel.bucket_mb;
  } else {
    options.model = verify::small_model(*args.get("model"));
  }
  options.model.validate();
  if (args.has("layout") || args.has("model")) options.layout = Layout::parse(args.get_or("layout", "dp=auto"));
  options.steps = static_cast<int>(args.get_int("steps", 3));
  options.global_batch = args.get_int("global-batch", options.global_batch);
  options.seed = static_cast<uint64_t>(args.get_int("seed", static_cast<long long>(options.seed)));
  options.bucket_mb = args.get_double("bucket-mb", options.bucket_mb);
  options.optimizer = args.get_or("optim", "sgd");
  options.lr = args.get_double("lr", options.lr);
  WorldOptions world_options;
  world_options.comm.timeout_s = args.get_double("timeout-s", world_options.comm.timeout_s);
  // Check what can be checked before starting MPI, so bad input fails fast.
  options.validate();
  world_options.validate();
  int ranks = under_mpi_launcher() ? launcher_world_size() : static_cast<int>(args.get_int("nproc", 1));
  if (ranks >= 1) {  // a layout that does not factor, or a batch that does not divide, fails before MPI starts
    Layout resolved = options.layout.resolve(ranks);
    DistributedSampler(options.global_batch, 0, resolved.dp);
  }
  maybe_relaunch("verify", argl);

  World world(argc, argv, world_options);
  if (world.rank() == 0)
    std::printf("paratorch: %d ranks (%d on this node), %s, %d threads/rank, device %s, libtorch %s\n",
                world.size(), world.local_size(), world.thread_level().c_str(), world.threads(),
                world.device().str().c_str(), compat::torch_version().c_str());
  auto result = verify::run_equivalence(world, options, /*progress=*/true);
  if (world.rank() == 0) {
    if (!result.pass) std::printf("worst parameter: %s\n", result.worst_param.c_str());
    std::printf("%s\n", result.summary_line().c_str());
    std::fflush(stdout);
  }
  return result.pass ? 0 : 1;
}

}  // namespace paratorch::cli
