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
//    The zero-bubble schedules split the backward's cost into I and W
//    (FixedCost below), and are set against 1F1B's measured bubble too.
//    "in flight": the most micro-batches whose activations a rank held at
//    once (W pending included), in whole stages' worth, the largest rank's.
// 2. gpt on that harness (real blocks, each stage also paying part 1's
//    costs): step time and throughput of zb-h1 and zb-v against 1f1b.
// 3. gpt (6 layers of width 128, seq 64; two blocks per rank, the embedding
//    and head riding along at the ends), m = 4, 8, 16 micro-batches of 2
//    sequences: the same bubble measurement with real compute, and each
//    rank's peak heap growth during a step — the activations autograd keeps:
//    GPipe holds m micro-batches, 1F1B at most p - r on stage r, the
//    zero-bubble schedules at most p (their retained graphs included).
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

// A stage of fixed cost: y = x * w; forward waits `forward_ms`, backward
// `backward_ms`: half for the input's gradient (I), half for the weight's
// (W), each only when autograd asks for it — so a split backward
// (zb-h1, zb-v) pays each half in its own pass.
struct FixedCost : public torch::autograd::Function<FixedCost> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w,
                               double forward_ms, double backward_ms) {
    ctx->saved_data["backward_ms"] = backward_ms;
    ctx->save_for_backward({x, w});
    std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(forward_ms));
    return x * w;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const double half = ctx->saved_data["backward_ms"].toDouble() / 2;
    const bool input = ctx->needs_input_grad(0), weight = ctx->needs_input_grad(1);
    const auto saved = ctx->get_saved_variables();
    const double ms = (input ? half : 0) + (weight ? half : 0);
    std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(ms));
    return {input ? grads[0] * saved[1] : torch::Tensor(), weight ? (grads[0] * saved[0]).sum(0) : torch::Tensor(),
            torch::Tensor(), torch::Tensor()};
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

struct FixedCostFigures {
  double bubble = 0;
  double peak_in_flight = 0;  // most micro-batches' activations any rank held, in whole stages' worth
};

FixedCostFigures fixed_cost_run(World& world, const std::string& schedule, int m, int v, int steps, double forward_ms) {
  ProcessGroups groups(world.comm(), Layout{1, world.size(), 1});
  const pipeline::PipelineShape shape = pipeline::shape_for(schedule, world.size(), m, v);
  std::vector<pipeline::StageChunk> chunks;
  for (int c = 0; c < shape.virtual_stages; ++c) {
    // x * scale + shift before the fixed cost: a layer of its own, so the
    // first stage too has an activation path for I (its input needs no gradient).
    auto weight = torch::ones({8}, torch::requires_grad()), scale = torch::ones({8}, torch::requires_grad()),
         shift = torch::zeros({8}, torch::requires_grad());
    const int chunks_per_rank = shape.virtual_stages;
    models::ModelBlock block{"fixed", {}, {}, [=](const torch::Tensor& x) {
                               return FixedCost::apply(x * scale + shift, weight, forward_ms / chunks_per_rank,
                                                       2 * forward_ms / chunks_per_rank);
                             }};
    chunks.push_back({shape.model_stage(groups.coords().pp, c), {block}});
  }
  std::vector<pipeline::BoundarySpec> boundaries(static_cast<size_t>(shape.model_stages() - 1), {{-1, 8}, torch::kFloat});
  pipeline::Executor executor(groups.pp(), pipeline::make_schedule(schedule, shape), std::move(chunks), boundaries,
                              torch::kCPU, false);
  std::vector<models::Batch> micro(static_cast<size_t>(m), models::Batch{torch::ones({2, 8}), torch::zeros({2})});
  auto criterion = [](const torch::Tensor& out, const models::Batch&) { return out.sum(); };
  FixedCostFigures out;
  out.bubble = traced_bubble(world, groups.layout(), [&] { executor.run_step(micro, criterion, 1.0 / m); }, steps);
  auto peak = torch::tensor(static_cast<double>(executor.stats().peak_in_flight) / shape.virtual_stages, torch::kDouble);
  world.comm()->all_reduce(peak, ReduceOp::kMax);
  out.peak_in_flight = peak.item<double>();
  return out;
}

struct Figures {
  double bubble = 0, theory = 0;
  std::vector<double> peak_mb;  // per stage, MiB
};

Figures gpt_run(World& world, const std::string& schedule, int m, int steps) {
  models::ModelConfig mc;
  mc.name = "gpt", mc.n_layers = 6, mc.d_model = 128, mc.n_heads = 4, mc.seq_len = 64;
  auto dataset = data::make_dataset("synthetic", mc, 7);
  ProcessGroups groups(world.comm(), Layout{1, world.size(), 1});
  pipeline::PipelineEngineOptions o;
  o.global_batch = 2 * m, o.microbatches = m, o.schedule = paratorch::parallel::pipeline::schedule_from_name(schedule), o.model_name = "gpt";
  // Two blocks per rank: cut at 2,4,6, or zb-v's V of one block per stage.
  o.partition = schedule == "zb-v" ? pipeline::BlockPartition{paratorch::PartitionBy::kParameters, {}}
                                   : pipeline::BlockPartition{paratorch::PartitionBy::kSplitPoints, {2, 4, 6}};
  pipeline::PipelineEngine engine(groups, models::make_model(mc), *dataset, world.device(), o);
  auto& executor = const_cast<pipeline::Executor&>(engine.executor());
  DistributedSampler batches(o.global_batch, 0, 1);
  int64_t s = 0;
  executor.measure_memory(true);
  Figures f;
  f.bubble = traced_bubble(
      world, groups.layout(),
      [&] {
        optim::zero_gradients(engine.named_parameters());
        engine.forward_backward(parallel::local_microbatches(engine, *dataset, batches.global_indices(s++)));
      },
      steps);
  auto peak = torch::zeros({world.size()}, torch::kDouble);
  peak[world.rank()] = static_cast<double>(executor.stats().peak_heap_growth_bytes) / (1 << 20);
  world.comm()->all_reduce(peak, ReduceOp::kSum);
  for (int r = 0; r < world.size(); ++r) f.peak_mb.push_back(peak[r].item<double>());
  f.theory = pipeline::theoretical_bubble(schedule, pipeline::shape_for(schedule, world.size(), m, 1));
  return f;
}

// gpt's real blocks (6 layers of width 64, seq 32: 8 blocks, cut evenly into
// the schedule's stages) with each stage also paying part 1's fixed costs,
// so four ranks on few cores measure the schedule rather than their
// contention for cores. Returns the median step in ms (rank 0).
double fixed_cost_gpt_step_ms(World& world, const std::string& schedule, int m, int steps, double forward_ms) {
  models::ModelConfig mc;
  mc.name = "gpt", mc.n_layers = 6, mc.d_model = 64, mc.n_heads = 4, mc.seq_len = 32;
  auto model = models::make_model(mc);
  model->initialize(1234);
  auto dataset = data::make_dataset("synthetic", mc, 7);
  const auto blocks = model->blocks();
  ProcessGroups groups(world.comm(), Layout{1, world.size(), 1});
  const pipeline::PipelineShape shape = pipeline::shape_for(schedule, world.size(), m, 1);
  const int stages = shape.model_stages(), n = static_cast<int>(blocks.size());
  auto first = [&](int stage) { return stage * n / stages; };
  std::vector<pipeline::BoundarySpec> boundaries;
  {
    torch::NoGradGuard no_grad;
    torch::Tensor x = dataset->train_batch({0}).input;
    for (int st = 0; st + 1 < stages; ++st) {
      for (int b = first(st); b < first(st + 1); ++b) x = blocks[static_cast<size_t>(b)].forward(x);
      auto dims = x.sizes().vec();
      dims[0] = -1;
      boundaries.push_back({dims, x.scalar_type()});
    }
  }
  std::vector<pipeline::StageChunk> chunks;
  const double stage_ms = forward_ms / shape.virtual_stages;
  for (int c = 0; c < shape.virtual_stages; ++c) {
    const int st = shape.model_stage(groups.coords().pp, c);
    pipeline::StageChunk chunk{st, {}};
    for (int b = first(st); b < first(st + 1); ++b) chunk.blocks.push_back(blocks[static_cast<size_t>(b)]);
    auto weight = torch::ones({1}, torch::requires_grad());
    chunk.blocks.push_back({"fixed", {}, {}, [weight, stage_ms](const torch::Tensor& x) {
                              return FixedCost::apply(x, weight, stage_ms, 2 * stage_ms);
                            }});
    chunks.push_back(std::move(chunk));
  }
  pipeline::Executor executor(groups.pp(), pipeline::make_schedule(schedule, shape), std::move(chunks), boundaries,
                              torch::kCPU, false);
  std::vector<models::Batch> micro;
  for (int k = 0; k < m; ++k) micro.push_back(dataset->train_batch({2 * k, 2 * k + 1}));
  auto criterion = [&model](const torch::Tensor& out, const models::Batch& b) { return model->criterion(out, b); };
  std::vector<double> ms;
  for (int s = 0; s <= steps; ++s) {
    world.comm()->barrier();
    const auto t0 = std::chrono::steady_clock::now();
    executor.run_step(micro, criterion, 1.0 / m);
    world.comm()->barrier();
    if (s > 0) ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    for (auto& p : model->parameters()) p.mutable_grad() = torch::Tensor();
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
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
                "%-16s %4s %9s %9s %7s %9s\n", p, world.threads(), steps, forward_ms, 2 * forward_ms, "schedule", "m", "bubble",
                "theory", "ratio", "in flight");
  std::map<int, FixedCostFigures> one_f_one_b;  // per m: the zero-bubble schedules' peer
  for (const std::string schedule : {"gpipe", "1f1b", "interleaved", "zb-h1", "zb-v"})
    for (int m : {4, 8, 16}) {
      const int v = schedule == "interleaved" ? 2 : 1;
      const auto f = fixed_cost_run(world, schedule, m, v, steps, forward_ms);
      const double theory = pipeline::theoretical_bubble(schedule, pipeline::shape_for(schedule, p, m, v));
      if (schedule == "1f1b") one_f_one_b[m] = f;
      if (world.rank() == 0) {
        std::printf("%-16s %4d %9.3f %9.3f %7.2f %9.1f", (schedule + (v > 1 ? " v=2" : "")).c_str(), m, f.bubble, theory,
                    f.bubble / theory, f.peak_in_flight);
        if (pipeline::splits_backward(schedule))
          std::printf("   %.2fx 1f1b's bubble (theory %.2fx), %.2fx its activations in flight", f.bubble / one_f_one_b[m].bubble,
                      theory / pipeline::theoretical_bubble("1f1b", {p, m, 1}), f.peak_in_flight / one_f_one_b[m].peak_in_flight);
        std::printf("\n");
      }
      std::fflush(stdout);
    }
  if (world.rank() == 0)
    std::printf("\n2. gpt 6x64 (seq 32) on the fixed-cost harness: real blocks cut evenly into the schedule's stages, "
                "each stage also paying part 1's costs; micro-batches of 2 sequences\n%-16s %4s %10s %12s %9s\n",
                "schedule", "m", "step ms", "sequences/s", "vs 1f1b");
  for (int m : {8, 16}) {
    double base = 0;
    for (const std::string schedule : {"1f1b", "zb-h1", "zb-v"}) {
      const double ms = fixed_cost_gpt_step_ms(world, schedule, m, steps, forward_ms);
      if (schedule == "1f1b") base = ms;
      if (world.rank() == 0)
        std::printf("%-16s %4d %10.1f %12.1f %8.2fx\n", schedule.c_str(), m, ms, 2 * m / (ms / 1000), base / ms);
      std::fflush(stdout);
    }
  }
  if (world.rank() == 0)
    std::printf("\n3. gpt 6x128 (seq 64), two blocks per rank (cut at 2,4,6; zb-v: one per stage), micro-batches of 2 sequences\n"
                "%-16s %4s %9s %9s %7s   %s\n", "schedule", "m", "bubble", "theory", "ratio",
                "peak activation heap per rank, MiB (largest rank vs gpipe's; zero-bubble also vs 1f1b's)");
  std::map<int, double> gpipe_largest, one_f_one_b_largest;
  for (const std::string schedule : {"gpipe", "1f1b", "zb-h1", "zb-v"})
    for (int m : {4, 8, 16}) {
      auto f = gpt_run(world, schedule, m, steps);
      const double largest = *std::max_element(f.peak_mb.begin(), f.peak_mb.end());
      if (schedule == "gpipe") gpipe_largest[m] = largest;
      if (schedule == "1f1b") one_f_one_b_largest[m] = largest;
      if (world.rank() != 0) continue;
      std::string peaks;
      char buf[64];
      for (double x : f.peak_mb) std::snprintf(buf, sizeof buf, " %7.1f", x), peaks += buf;
      if (schedule != "gpipe") std::snprintf(buf, sizeof buf, "   (%.2fx gpipe)", largest / gpipe_largest[m]), peaks += buf;
      if (pipeline::splits_backward(schedule))
        std::snprintf(buf, sizeof buf, " (%.2fx 1f1b)", largest / one_f_one_b_largest[m]), peaks += buf;
      std::printf("%-16s %4d %9.3f %9.3f %7.2f  %s\n", schedule.c_str(), m, f.bubble, f.theory, f.bubble / f.theory,
                  peaks.c_str());
      std::fflush(stdout);
    }
  return 0;
}
