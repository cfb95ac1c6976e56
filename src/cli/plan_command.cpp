// src/cli/plan_command.cpp — `paratorch plan` and `paratorch simulate`:
// predict a run's step time, throughput and memory on a cluster described by
// a cluster file, for one layout (simulate) or the best of every layout
// (plan). Nothing is allocated and no rank starts (docs/plan.md).
#include "cli/args.h"
#include "cli/commands.h"
#include "plan/cluster.h"
#include "plan/report.h"
#include "plan/search.h"
#include "report/svg_plot.h"
#include "train/config.h"
#include "train/engine_options.h"

#include <paratorch/errors.h>
#include <paratorch/layout.h>

#include <cstdio>
#include <filesystem>
#include <iostream>

namespace paratorch::cli {
namespace {

std::vector<FlagSpec> plan_flags(bool simulate) {
  std::vector<FlagSpec> flags = {
      {"config", "F.toml", "the run: [model] (gpt), [data] global_batch, [train] precision, [optim] name"},
      {"cluster", "C.toml", "the machine: a [cluster] table (docs/plan.md; examples/clusters/)"},
      {"set", "section.key=value", "override one config key (repeatable)"},
      {"zero", "S", "ZeRO stage 0-3"},
      {"microbatch-size", "M", "sequences per micro-batch"},
      {"schedule", "X", "gpipe | 1f1b | interleaved (with [parallel] virtual_stages, default 2) | zb-h1 | zb-v"},
      {"json", "", "print the prediction(s) as JSON lines instead of text"},
      {"help", "", "show this help"},
  };
  if (simulate) {
    flags.insert(flags.begin() + 3, {"layout", "dp=A,pp=B,tp=C", "the layout (default: the config's [parallel])"});
    flags.insert(flags.begin() + 4, {"recompute", "0|1", "full activation recomputation (default: the config's "
                                                         "[parallel] activation_checkpointing)"});
    flags.push_back({"svg", "F.svg", "where to write the simulated pipeline chart (default <out_dir>/pipeline_simulated.svg)"});
  } else {
    flags.push_back({"top", "N", "how many layouts to list (default 5)"});
  }
  return flags;
}

plan::RunShape run_shape(const train::Config& config) {
  plan::RunShape run;
  run.model = plan::ModelShape::from(config.model);
  run.global_batch = config.data.global_batch;
  run.precision = config.train.precision;
  run.reduce_precision = train::reduce_precision(config);
  run.optimizer = config.optim.name;
  return run;
}

// --schedule: the config's [parallel] schedule and virtual_stages unless given.
void apply_schedule(const Args& args, const train::Config& config, std::string& schedule, int& v) {
  schedule = args.get_or("schedule", config.parallel.schedule);
  v = schedule == "interleaved" ? (config.parallel.virtual_stages > 1 ? config.parallel.virtual_stages : 2) : 1;
}

void print_help(const std::string& name, bool simulate) {
  const std::string line = simulate ? "simulate: layout=dp=A,pp=B,tp=C zero=S microbatch_size=M schedule=X recompute=0|1 "
                                      "step_s=T tokens_per_s=K tflops_per_gpu=F mfu=U mem_gb=G"
                                    : "plan: best layout=... (the same fields)";
  std::cout << "usage: paratorch " << name << " --config F.toml --cluster C.toml [flags]\n\n"
            << (simulate ? "Predicts one layout's step time, throughput and memory per accelerator.\n"
                         : "Ranks every dp x pp x tp layout, micro-batch size, schedule, ZeRO stage and\n"
                           "recomputation choice by predicted throughput.\n")
            << "The last line is\n  " << line << "\n\n"
            << format_flags(plan_flags(simulate)) << "\nReference: docs/plan.md\n";
}

}  // namespace

int run_simulate(const std::vector<std::string>& argl) {
  Args args("simulate", plan_flags(true), argl);
  if (args.has("help")) return print_help("simulate", true), 0;
  if (!args.has("config") || !args.has("cluster"))
    throw UsageError("paratorch simulate: --config F.toml and --cluster C.toml are required (see --help)");
  const train::Config config = train::load_config(*args.get("config"), args.all("set"));
  const plan::Cluster cluster = plan::load_cluster(*args.get("cluster"));
  const plan::RunShape run = run_shape(config);
  plan::PlanLayout L;
  const Layout given = Layout::parse(args.get_or("layout", "dp=" + std::string(config.parallel.dp ? std::to_string(config.parallel.dp) : "auto") +
                                                               ",pp=" + std::to_string(config.parallel.pp) +
                                                               ",tp=" + std::to_string(config.parallel.tp)));
  L.pp = given.pp, L.tp = given.tp;
  L.dp = given.dp > 0 ? given.dp : cluster.gpus() / (L.pp * L.tp);
  L.zero = static_cast<int>(args.get_int("zero", config.parallel.zero));
  apply_schedule(args, config, L.schedule, L.virtual_stages);
  L.microbatch_size = args.get_int("microbatch-size", 0);
  if (L.microbatch_size == 0) {  // the config's [parallel] microbatches per replica
    const int64_t per_replica = run.global_batch / std::max(1, L.dp);
    L.microbatch_size = std::max<int64_t>(1, per_replica / config.parallel.microbatches);
  }
  L.recompute = args.get_int("recompute", config.parallel.activation_checkpointing ? 1 : 0) != 0;
  const plan::Prediction p = plan::predict(run, cluster, L);
  if (args.has("json")) {
    std::cout << plan::prediction_json(p) << "\n";
  } else {
    std::cout << "paratorch simulate: " << config.model.name << " " << run.model.parameters() / 1e9 << "B parameters, global batch "
              << run.global_batch << ", " << run.precision << ", on " << L.dp * L.pp * L.tp << " of the cluster's "
              << cluster.gpus() << " accelerators (" << cluster.nodes << " x " << cluster.gpus_per_node << ")\n"
              << plan::breakdown_text(p, cluster.memory_gb);
  }
  if (L.pp > 1) {
    const std::string svg = args.get_or("svg", config.train.out_dir + "/pipeline_simulated.svg");
    std::filesystem::create_directories(std::filesystem::path(svg).parent_path().empty()
                                            ? std::filesystem::path(".")
                                            : std::filesystem::path(svg).parent_path());
    report::write_text_file(svg, plan::simulated_gantt_svg(p, "simulated " + L.schedule_text() + ", " + L.layout_text()));
    if (!args.has("json")) std::cout << "  simulated pipeline chart: " << svg << "\n";
  }
  std::cout << plan::contract_line("simulate: ", p) << std::endl;
  return 0;
}

int run_plan(const std::vector<std::string>& argl) {
  Args args("plan", plan_flags(false), argl);
  if (args.has("help")) return print_help("plan", false), 0;
  if (!args.has("config") || !args.has("cluster"))
    throw UsageError("paratorch plan: --config F.toml and --cluster C.toml are required (see --help)");
  const train::Config config = train::load_config(*args.get("config"), args.all("set"));
  const plan::Cluster cluster = plan::load_cluster(*args.get("cluster"));
  const plan::RunShape run = run_shape(config);
  plan::SearchOptions o;
  if (args.has("zero")) o.zero = static_cast<int>(args.get_int("zero", 0));
  o.microbatch_size = args.get_int("microbatch-size", 0);
  o.schedule = args.get_or("schedule", "");
  const plan::SearchResult r = plan::search_layouts(run, cluster, o);
  if (!r.any_fits())
    throw UsageError("paratorch: plan: no layout fits in " + std::to_string(cluster.memory_gb) +
                     " GB per accelerator; the nearest (" + plan::contract_line("", r.nearest_miss) + ") misses by " +
                     std::to_string(r.nearest_miss.memory_over_gb) + " GB: add accelerators or memory, or shrink the model");
  const size_t top = static_cast<size_t>(std::max<long long>(1, args.get_int("top", 5)));
  if (!args.has("json"))
    std::cout << "paratorch plan: " << config.model.name << " " << run.model.parameters() / 1e9 << "B parameters, global batch "
              << run.global_batch << ", " << run.precision << ", on " << cluster.gpus() << " accelerators; "
              << r.candidates << " layouts predicted, " << r.ranked.size() << " simulated that fit\n";
  for (size_t i = 0; i < std::min(top, r.ranked.size()); ++i) {
    if (args.has("json")) {
      std::cout << plan::prediction_json(r.ranked[i]) << "\n";
    } else {
      std::cout << plan::contract_line(std::to_string(i + 1) + ". ", r.ranked[i]) << "\n"
                << plan::breakdown_text(r.ranked[i], cluster.memory_gb);
    }
  }
  std::cout << plan::contract_line("plan: best ", r.ranked.front()) << std::endl;
  return 0;
}

}  // namespace paratorch::cli
