// bench/pipeline.cpp — measured pipeline bubble and activation memory against
// theory. Run under mpirun -np 4 (4 pipeline stages).
//
// Two parts, each printing the theory (the peer) beside the measurement:
// 1. fixed-cost stages: the real executor, schedules and MPI transfers, with
//    each stage's compute replaced by a fixed wait (forward 20 ms, backward
//    40 ms per stage by default, split over chunks), so four ranks on a few
//    cores do not compete for them. The measured bubble (median over steps of the mean
//    over stages of idle / step window, parallel/pipeline/timeline.h) is set against
//    (p-1)/(m+p-1) for gpipe and 1f1b and (p-1)/(v*m+p-1) for interleaved.
// 2. gpt (8 layers of width 128, seq 64; stages cut at blocks 3,5,7: two
//    layers each, the embedding and head riding along at the ends), m = 4, 8,
//    16 micro-batches of 2 sequences: the same bubble measurement with real
//    compute, and each stage's peak heap growth during a step — the
//    activations autograd keeps: GPipe holds m micro-batches, 1F1B at most
//    p - r on stage r.
#include "data/dataset.h"
#include "parallel/pipeline/timeline.h"
#include "report/trace.h"
#include "optim/optimizer.h"
#include "parallel/pipeline/options.h"
#include "parallel/pipeline/pipeline_engine.h"
#include <paratorch/sampler.h>
#include <paratorch/world.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <thread>

namespace {

using namespace paratorch;

// A stage of fixed cost: forward waits `forward_ms`, backward `backward_ms`.
struct FixedCost : public torch::autograd::Function<FixedCost> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, double forward_ms,
                               double backward_ms) {
    ctx->saved_data["backward_ms"] = backward_ms;
    std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(forward_ms));
    return x.clone();
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(ctx->saved_data["backward_ms"].toDouble()));
    return {grads[0], torch::Tensor(), torch::Tensor()};
  }
};

// Runs `steps` traced steps of `executor` and returns the mean over stages
// of the median bubble (rank 0; 0 elsewhere).
double traced_bubble(World& world, const Layout& layout, const std::function<void()>& step, int steps) {
  step();  // warm-up, untraced
  auto& tracer = report::Tracer::instance();
  tracer.clear();
  tracer.enable(world.rank());
  for (int s = 0; s < steps; ++s) step();
  tracer.disable();
  const std::string path = "/tmp/paratorch_bench_pipeline_trace.json";
  report::write_trace(*world.comm(), path);
  if (world.rank() != 0) return 0;
  std::ifstream in(path);
  auto bubble = pipeline::measured_bubble(
      pipeline::read_pipeline_trace(std::string(std::istreambuf_iterator<char>(in), {}), layout));
  double mean = 0;
  for (double b : bubble) mean += b / static_cast<double>(bubble.size());
  return mean;
}

double fixed_cost_bubble(World& world, const std::string& schedule, int m, int v, int steps, double forward_ms) {
  ProcessGroups groups(world.comm(), Layout{1, world.size(), 1});
  const pipeline::PipelineShape shape{world.size(), m, v};
  auto weight = torch::ones({8}, torch::requires_grad());
  std::vector<pipeline::StageChunk> chunks;
  for (int c = 0; c < v; ++c) {
    models::ModelBlock block{"fixed", {}, {}, [weight, v, forward_ms](const torch::Tensor& x) {
                               return FixedCost::apply(x * weight, forward_ms / v, 2 * forward_ms / v);
                             }};
    chunks.push_back({shape.model_stage(groups.coords().pp, c), {block}});
  }
  std::vector<pipeline::BoundarySpec> boundaries(static_cast<size_t>(shape.model_stages() - 1), {{-1, 8}, torch::kFloat});
  pipeline::Executor executor(groups.pp(), pipeline::make_schedule(schedule, shape), std::move(chunks), boundaries,
                              torch::kCPU, false);
  std::vector<models::Batch> micro(static_cast<size_t>(m), models::Batch{torch::ones({2, 8}), torch::zeros({2})});
  auto criterion = [](const torch::Tensor& out, const models::Batch&) { return out.sum(); };
  return traced_bubble(world, groups.layout(), [&] { executor.run_step(micro, criterion, 1.0 / m); }, steps);
}

struct Figures {
  double bubble = 0, theory = 0;
  std::vector<double> peak_mb;  // per stage, MiB
};

Figures gpt_run(World& world, const std::string& schedule, int m, int steps) {
  models::ModelConfig mc;
  mc.name = "gpt", mc.n_layers = 8, mc.d_model = 128, mc.n_heads = 4, mc.seq_len = 64;
  auto dataset = data::make_dataset("synthetic", mc, 7);
  ProcessGroups groups(world.comm(), Layout{1, world.size(), 1});
  train::PipelineEngineOptions o;
  o.global_batch = 2 * m, o.microbatches = m, o.schedule = paratorch::parallel::pipeline::schedule_from_name(schedule), o.partition = {paratorch::PartitionBy::kSplitPoints, {3, 5, 7}}, o.model_name = "gpt";
  train::PipelineEngine engine(groups, models::make_model(mc), *dataset, world.device(), o);
  auto& executor = const_cast<pipeline::Executor&>(engine.executor());
  DistributedSampler batches(o.global_batch, 0, 1);
  int64_t s = 0;
  executor.measure_memory(true);
  Figures f;
  f.bubble = traced_bubble(world, groups.layout(), [&] {
    train::zero_gradients(engine.named_parameters());
    engine.forward_backward(train::local_microbatches(engine, *dataset, batches.global_indices(s++)));
  }, steps);
  auto peak = torch::zeros({world.size()}, torch::kDouble);
  peak[world.rank()] = static_cast<double>(executor.stats().peak_heap_growth_bytes) / (1 << 20);
  world.comm()->all_reduce(peak, ReduceOp::kSum);
  for (int r = 0; r < world.size(); ++r) f.peak_mb.push_back(peak[r].item<double>());
  f.theory = pipeline::theoretical_bubble(schedule, {world.size(), m, 1});
  return f;
}

}  // namespace

// Measured as `paratorch` runs: idle compute threads nap (world.h).
PARATORCH_NAP_IDLE_COMPUTE_THREADS();

int main(int argc, char** argv) {
  paratorch::World world(argc, argv);
  const int steps = argc > 1 ? std::atoi(argv[1]) : 5;
  const double forward_ms = argc > 2 ? std::atof(argv[2]) : 20;  // per stage; backward costs twice that
  const int p = world.size();
  if (world.rank() == 0)
    std::printf("pipeline: %d stages, %d threads/rank, median of %d traced steps (after one warm-up)\n\n"
                "1. fixed-cost stages (forward %g ms, backward %g ms per stage; real executor and MPI transfers)\n"
                "%-16s %4s %9s %9s %7s\n", p, world.threads(), steps, forward_ms, 2 * forward_ms, "schedule", "m", "bubble",
                "theory", "ratio");
  for (const std::string schedule : {"gpipe", "1f1b", "interleaved"})
    for (int m : {4, 8, 16}) {
      const int v = schedule == "interleaved" ? 2 : 1;
      const double bubble = fixed_cost_bubble(world, schedule, m, v, steps, forward_ms);
      const double theory = pipeline::theoretical_bubble(schedule, {p, m, v});
      if (world.rank() == 0)
        std::printf("%-16s %4d %9.3f %9.3f %7.2f\n", (schedule + (v > 1 ? " v=2" : "")).c_str(), m, bubble, theory,
                    bubble / theory);
      std::fflush(stdout);
    }
  if (world.rank() == 0)
    std::printf("\n2. gpt 8x128 (seq 64), stages cut at blocks 3,5,7, micro-batches of 2 sequences\n"
                "%-16s %4s %9s %9s %7s   %s\n", "schedule", "m", "bubble", "theory", "ratio",
                "peak activation heap per stage, MiB (1f1b: largest stage vs gpipe's largest)");
  std::map<int, double> gpipe_largest;
  for (const std::string schedule : {"gpipe", "1f1b"})
    for (int m : {4, 8, 16}) {
      auto f = gpt_run(world, schedule, m, steps);
      const double largest = *std::max_element(f.peak_mb.begin(), f.peak_mb.end());
      if (schedule == "gpipe") gpipe_largest[m] = largest;
      if (world.rank() != 0) continue;
      std::string peaks;
      char buf[64];
      for (double x : f.peak_mb) std::snprintf(buf, sizeof buf, " %7.1f", x), peaks += buf;
      if (schedule != "gpipe") std::snprintf(buf, sizeof buf, "   (%.2fx gpipe)", largest / gpipe_largest[m]), peaks += buf;
      std::printf("%-16s %4d %9.3f %9.3f %7.2f  %s\n", schedule.c_str(), m, f.bubble, f.theory, f.bubble / f.theory,
                  peaks.c_str());
      std::fflush(stdout);
    }
  return 0;
}
