// src/cli/calibrate_command.cpp — `paratorch plan --calibrate`: measures this
// machine at a config's model shapes and writes a cluster file that `plan`
// and `simulate` read (plan/calibrate.h, docs/plan.md). With --nproc N it
// runs N ranks, which also measure the links between them.
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/launcher.h"
#include "plan/calibrate.h"
#include "report/svg_plot.h"
#include "train/config.h"

#include <paratorch/errors.h>
#include <paratorch/world.h>

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>

namespace paratorch::cli {
namespace {

std::vector<FlagSpec> calibrate_flags() {
  return {
      {"calibrate", "", "measure this machine and write a cluster file"},
      {"config", "F.toml", "the model whose shapes are measured ([model], [data] global_batch, [train] precision)"},
      {"set", "section.key=value", "override one config key (repeatable)"},
      {"out", "C.toml", "where to write the cluster file (default cluster.toml)"},
      {"nproc", "N", "ranks to start; with 2 or more the links between them are measured too"},
      {"ranks-per-node", "R", "the file's gpus_per_node: the most ranks a layout may put here (default: the cores)"},
      {"microbatch-tokens", "T", "rows of the measured products (default: one rank's share of the batch at --nproc)"},
      {"help", "", "show this help"},
  };
}

int cores_here() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1L, sysconf(_SC_NPROCESSORS_ONLN));
}

double memory_gb_here() {
  return static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE)) / 1e9;
}

}  // namespace

int run_calibrate(int& argc, char**& argv, const std::vector<std::string>& argl) {
  Args args("plan --calibrate", calibrate_flags(), argl);
  if (args.has("help")) {
    std::cout << "usage: paratorch plan --calibrate --config F.toml [--nproc N] [--out C.toml] [flags]\n\n"
                 "Measures GEMM throughput at the model's shapes, element-wise memory bandwidth and\n"
                 "(at --nproc 2 or more) the all-reduce and point-to-point links, and writes a cluster\n"
                 "file. The last line is\n"
                 "  calibrate: peak_tflops=P gemm_efficiency=E gemm_half_dim=H memory_gbps=M elementwise_gbps=W "
                 "link_gbps=B link_latency_us=L out=C.toml\n\n"
              << format_flags(calibrate_flags()) << "\nReference: docs/plan.md\n";
    return 0;
  }
  if (!args.has("config"))
    throw UsageError("paratorch plan --calibrate: --config F.toml is required: the model whose shapes are measured");
  const train::Config config = train::load_config(*args.get("config"), args.all("set"));
  const int nproc = under_mpi_launcher() ? launcher_world_size() : static_cast<int>(args.get_int("nproc", 1));
  plan::CalibrateOptions o;
  o.model = plan::ModelShape::from(config.model);
  o.precision = config.train.precision;
  o.optimizer = config.optim.name;
  o.cores_per_node = cores_here();
  o.ranks_per_node = static_cast<int>(args.get_int("ranks-per-node", o.cores_per_node));
  o.memory_gb = memory_gb_here() / o.ranks_per_node;
  const int64_t per_rank = std::max<int64_t>(1, config.data.global_batch / std::max(1, nproc));
  o.microbatch_tokens = args.get_int("microbatch-tokens", per_rank * o.model.seq);
  o.validate();  // before any rank starts
  maybe_relaunch("plan", argl);

  WorldOptions world_options;
  world_options.threads_per_rank = config.train.threads_per_rank;
  World world(argc, argv, world_options);
  const plan::Calibration cal = plan::calibrate(o, world.comm().get());
  if (world.rank() != 0) return 0;
  const std::string out = args.get_or("out", "cluster.toml");
  if (const auto dir = std::filesystem::path(out).parent_path(); !dir.empty()) std::filesystem::create_directories(dir);
  report::write_text_file(out, plan::cluster_toml(cal, o.precision));
  const plan::Cluster& c = cal.cluster;
  std::printf("calibrate: peak_tflops=%.4g gemm_efficiency=%.3f gemm_half_dim=%.4g memory_gbps=%.4g "
              "elementwise_gbps=%.4g link_gbps=%.4g link_latency_us=%.4g out=%s\n",
              c.peak_tflops.at(o.precision), c.gemm_efficiency, c.gemm_half_dim, c.memory_gbps, c.elementwise_gbps,
              c.intra_node_gbps, c.intra_node_latency_us, out.c_str());
  std::fflush(stdout);
  return 0;
}

}  // namespace paratorch::cli
