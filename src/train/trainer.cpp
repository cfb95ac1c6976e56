// src/train/trainer.cpp — the training loop. Read Trainer::run top to bottom:
// set-up, then one iteration per optimizer step, then the end-of-run outputs.
#include "train/trainer.h"
#include "train/train_step.h"

#include "train/async_runner.h"

#include "data/dataset.h"
#include "models/registry.h"
#include "report/metrics.h"
#include "report/progress.h"
#include "report/trace.h"
#include "parallel/pipeline/schedule.h"
#include "parallel/pipeline/timeline.h"
#include "train/checkpoint.h"
#include "train/sharded_checkpoint.h"
#include "train/generate.h"
#include "optim/lr_schedule.h"
#include "train/run_history.h"
#include "train/run_cadence.h"
#include "train/run_reporter.h"
#include "train/engine_factory.h"
#include "train/engine_options.h"
#include <paratorch/errors.h>
#include <paratorch/sampler.h>

#include <sys/resource.h>

#include <chrono>
#include <cmath>
#include <cstdio>

namespace paratorch::train {
namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Validation uses the first kValidationBatches global batches of held-out samples.
constexpr int kValidationBatches = 4;

// Which loop runs a config. Every mode whose ranks step together runs this
// one over an engine (make_engine): sync layouts, and the bulk-synchronous
// parameter server (ps, staleness 0: parallel/async/ps_engine.h), so `train` is the
// path `verify` checks — clipping the global gradient norm once per step,
// checkpointing whole tensors. Only ranks that do not step together (ps with
// staleness != 0, hogwild's threads) run their own loops (async_runner.h).
bool steps_together(const Config& config) {
  const auto& p = config.parallel;
  return p.mode == "sync" || (p.mode == "ps" && p.staleness == 0);
}

// The layout's groups. In ps mode the workers are the replicas (docs/async.md;
// check_async_layout refuses a dp that is not theirs), so it resolves to the whole world.
Layout run_layout(const ParallelSection& p, int world_size) {
  return Layout{p.mode == "ps" ? 0 : p.dp, p.pp, p.tp}.resolve(world_size);
}

// The layout as the start-up line and checkpoints name it.
std::string layout_text(const ParallelSection& p, const Layout& layout, int world_size) {
  if (p.mode != "ps") return layout.to_string();
  return "ps servers=" + std::to_string(p.servers) + " workers=" + std::to_string(world_size - p.servers);
}

}  // namespace

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // Linux reports KiB
}

std::string TrainResult::summary_line() const {
  char line[256];
  std::snprintf(line, sizeof line, "train: steps=%lld final_loss=%.4f mean_step_ms=%.1f throughput=%.1f unit=%s peak_rss_mb=%.0f",
                static_cast<long long>(steps), final_loss, mean_step_ms, throughput, unit.c_str(), peak_rss_mb);
  return line;
}

struct Trainer::Impl {
  World& world;
  Config config;
  ProcessGroups groups;
  std::unique_ptr<data::Dataset> dataset;
  std::unique_ptr<parallel::Engine> engine;
  std::unique_ptr<optim::Optimizer> optimizer;
  optim::LrSchedule schedule;
  DistributedSampler batches;  // global view: the engine takes its own slice
  std::unique_ptr<RunReporter> reporter;  // rank 0: metrics.jsonl, loss.svg, checkpoints
  std::unique_ptr<report::ProgressLine> progress;
  double step_ms_sum = 0;
  int64_t timed_steps = 0;
  int64_t step_comm_bytes = 0;   // comm_bytes_sent() over the last step (communicator.h)
  int64_t total_comm_bytes = 0;  // over this run's steps so far

  Impl(World& w, Config c)
      : world(w),
        config(std::move(c)),
        groups(w.comm(), run_layout(config.parallel, w.size())),
        batches(config.data.global_batch, 0, 1) {
    dataset = data::make_dataset(config.data.source, config.model, static_cast<uint64_t>(config.train.seed));
    engine = make_engine(config, groups, models::make_model(config.model), *dataset, w.device());
    optimizer = engine->build_optimizer(config.optim);
    schedule = optim::LrSchedule{config.optim.lr, config.optim.warmup_steps, config.train.steps};
  }

  bool leader() const { return world.rank() == 0; }
  /// Tokens or samples per second at `ms` per step.
  double throughput(double ms) const { return items_per_second(config, *dataset, ms); }
  std::string out(const std::string& file) const { return config.train.out_dir + "/" + file; }

  int64_t resume(const std::string& dir);
  double step(int64_t s, double* grad_norm);
  parallel::EvalResult validate();
  void log(int64_t s, double loss, double lr, double ms, double grad_norm, const parallel::EvalResult* eval,
           double elapsed_s);
  void save_checkpoint(int64_t steps_done);
  void finish_outputs();
  void print_sample();
  void announce(int64_t start);
};

Trainer::Trainer(World& world, Config config) : world_(world) {
  if (steps_together(config)) impl_ = std::make_unique<Impl>(world, std::move(config));
  else async_config_ = std::make_unique<Config>(std::move(config));
}
Trainer::~Trainer() = default;

TrainResult Trainer::run(const std::string& resume_dir) {
  if (!impl_) return async::run_async(world_, *async_config_, resume_dir);
  Impl& t = *impl_;
  const auto& train = t.config.train;
  const int64_t start = resume_dir.empty() ? 0 : t.resume(resume_dir);
  report::Tracer::instance().enable(t.world.rank());
  if (t.leader()) {
    t.reporter = std::make_unique<RunReporter>(t.config, *t.dataset, start);  // a resume trims metrics.jsonl
    t.progress = std::make_unique<report::ProgressLine>(train.steps, t.dataset->throughput_unit(),
                                                        report::stdout_is_terminal());
    t.announce(start);
  }
  double loss = 0;
  const double started = now_s();
  const RunCadence cadence(train);
  for (int64_t s = start; s < train.steps; ++s) {
    if (s - start == RunCadence::kTracedSteps) report::Tracer::instance().disable();
    const double t0 = now_s();
    double grad_norm = 0;
    const int64_t bytes0 = comm_bytes_sent();
    loss = t.step(s, &grad_norm);
    const double ms = (now_s() - t0) * 1000;
    t.step_comm_bytes = comm_bytes_sent() - bytes0;
    t.total_comm_bytes += t.step_comm_bytes;
    if (s > start || train.steps - start == 1) t.step_ms_sum += ms, ++t.timed_steps;  // first step warms up
    const bool last = cadence.last(s + 1);
    const bool validating = cadence.validates_mid_run(s + 1) || last;
    parallel::EvalResult eval;
    if (validating) eval = t.validate();
    if (cadence.logs(s + 1) || s == start)
      t.log(s + 1, loss, t.schedule.at(s), ms, grad_norm, validating ? &eval : nullptr, now_s() - started);
    else if (t.leader() && report::stdout_is_terminal())
      t.progress->update(s + 1, loss, t.throughput(ms), now_s() - started);
    if (cadence.checkpoints(s + 1)) t.save_checkpoint(s + 1);
  }
  t.finish_outputs();
  TrainResult result =
      run_result(t.config, *t.dataset, loss, t.timed_steps ? t.step_ms_sum / static_cast<double>(t.timed_steps) : 0);
  auto rss = torch::tensor({peak_rss_mb()}, torch::kDouble);
  t.world.comm()->all_reduce(rss, ReduceOp::kMax);
  result.peak_rss_mb = rss.item<double>();
  return result;
}

// ---- set-up -------------------------------------------------------------------

// Restores parameters, optimizer state and RNG from a checkpoint; returns its
// step. The data needs no state of its own: the batch of step s is a pure
// function of (seed, s), so continuing at s continues the exact sequence.
int64_t Trainer::Impl::resume(const std::string& dir) {
  // A sharded checkpoint: this rank reads only the parameters it holds,
  // and of a tp-sharded one only its shard where the split is the same.
  Checkpoint ckpt = read_checkpoint_to_resume(dir, engine->parameters_to_load());
  require_compatible(ckpt, config);
  engine->load_full_parameters(ckpt.model);
  optimizer->load_state_tensors(ckpt.optimizer);
  engine->load_checkpoint_state(ckpt.optimizer);  // the fp16 loss scaler
  auto rng = ckpt.optimizer.find("trainer.rng_cpu");
  if (rng != ckpt.optimizer.end()) {
    at::Generator cpu = at::detail::getDefaultCPUGenerator();  // a handle to the global generator
    std::lock_guard<std::mutex> lock(cpu.mutex());
    cpu.set_state(rng->second);
  }
  if (leader())
    std::printf("paratorch: resumed from %s at step %lld (written by layout %s on %d ranks)\n", dir.c_str(),
                static_cast<long long>(ckpt.step), ckpt.layout.c_str(), ckpt.world_size);
  return ckpt.step;
}

void Trainer::Impl::announce(int64_t start) {
  std::printf("paratorch train: %s with %lld parameters; data %s\n", config.model.name.c_str(),
              static_cast<long long>(engine->parameter_count()), dataset->describe().c_str());
  std::printf("paratorch train: %d ranks, layout %s, %s; %d threads/rank on %s; steps %lld..%d -> %s\n",
              world.size(), layout_text(config.parallel, groups.layout(), world.size()).c_str(),
              engine->describe().c_str(), world.threads(),
              world.device().str().c_str(), static_cast<long long>(start), config.train.steps,
              config.train.out_dir.c_str());
  std::printf("paratorch train: estimated memory per rank: %s\n",
              zero::estimate_memory(memory_estimate_options(config), engine->local_parameter_count(), groups.layout().dp).line().c_str());
  std::fflush(stdout);
}

// ---- one step -------------------------------------------------------------------

double Trainer::Impl::step(int64_t s, double* grad_norm) {
  // The trainer slices the global batch; the engine computes what it is given.
  const auto microbatches = parallel::local_microbatches(*engine, *dataset, batches.global_indices(s));
  StepResult r = take_step(*engine, *optimizer, microbatches, schedule.at(s), config.optim.grad_clip, s + 1);
  *grad_norm = r.grad_norm;
  return r.loss;
}

parallel::EvalResult Trainer::Impl::validate() {
  report::Tracer::Span span("validation", "compute");
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < kValidationBatches * config.data.global_batch; ++i) ids.push_back(i);
  parallel::EvalResult sum;
  for (int b = 0; b < kValidationBatches; ++b) {
    const auto first = ids.begin() + b * config.data.global_batch;
    parallel::EvalResult r = engine->evaluate(parallel::local_validation_batch(
        *engine, *dataset, std::vector<int64_t>(first, first + config.data.global_batch)));
    sum.loss += r.loss / kValidationBatches;
    sum.accuracy = r.accuracy < 0 ? -1 : std::max(0.0, sum.accuracy) + r.accuracy / kValidationBatches;
  }
  return sum;
}

// ---- what the user sees -----------------------------------------------------------

void Trainer::Impl::log(int64_t s, double loss, double lr, double ms, double grad_norm,
                        const parallel::EvalResult* eval, double elapsed_s) {
  if (!leader()) return;
  report::StepMetrics m = reporter->line(s, loss, lr, ms);
  m.grad_norm = grad_norm;
  for (const auto& [key, value] : engine->step_metrics()) m.extra[key] = value;
  if (eval) add_validation_fields(m, config.model.name, eval->loss, eval->accuracy);
  std::string extra;
  for (const auto& [key, value] : m.extra) extra += " " + key + "=" + std::to_string(value);
  // Bytes this rank sent during the step (ring-algorithm count), and since the run started.
  m.extra["comm_bytes"] = static_cast<double>(step_comm_bytes);
  m.extra["comm_bytes_total"] = static_cast<double>(total_comm_bytes);
  reporter->write(m);
  progress->update(s, loss, m.throughput, elapsed_s);
  if (eval) {
    progress->finish();
    std::printf("validation at step %lld:%s\n", static_cast<long long>(s), extra.c_str());
    std::fflush(stdout);
  }
}

// Sharded: every rank writes what it holds, in parallel (engines that
// cannot say gather whole tensors and spread the writing); rank 0 commits.
void Trainer::Impl::save_checkpoint(int64_t steps_done) {
  report::Tracer::Span span("checkpoint", "io");
  const int rank = world.comm()->rank(), size = world.comm()->size();
  auto pieces = engine->checkpoint_pieces(*optimizer);
  if (!pieces)
    pieces = spread_whole_tensors(engine->full_parameters(), engine->full_optimizer_state(optimizer->state_tensors()),
                                  rank, size);
  // State equal on every rank (the fp16 loss scaler, the CPU generator): rank 0's.
  std::map<std::string, torch::Tensor> global = engine->checkpoint_state();
  {
    at::Generator cpu = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(cpu.mutex());
    global["trainer.rng_cpu"] = cpu.get_state();
  }
  if (rank == 0) {
    auto more = spread_whole_tensors({}, global, 0, 1);
    pieces->insert(pieces->end(), more.begin(), more.end());
  }
  ShardedCheckpointInfo info{steps_done, layout_text(config.parallel, groups.layout(), size), to_toml(config)};
  write_sharded_checkpoint(config.train.out_dir + "/checkpoints", *pieces, info, *world.comm());
}

void Trainer::Impl::finish_outputs() {
  report::write_trace(*world.comm(), out("trace.json"));
  if (leader() && groups.layout().pp > 1) {  // measured bubble and pipeline.svg (docs/pipeline.md)
    const auto& p = config.parallel;
    const double theory = pipeline::theoretical_bubble(p.schedule, pipeline::shape_for(p.schedule, p.pp, p.microbatches, p.virtual_stages));
    const std::string line = pipeline::write_pipeline_report(out("trace.json"), out("pipeline.svg"), groups.layout(), theory);
    if (!line.empty()) std::printf("%s\n", line.c_str());
  }
  if (leader()) {
    progress->finish();
    reporter->finish();
  }
  if (models::model_family(config.model.name).text_sample) print_sample();
}

// A text sample from the trained weights. Layout-independent: rank 0 loads
// the full parameters into a fresh single-process copy of the model.
void Trainer::Impl::print_sample() {
  auto full = engine->full_parameters();
  if (!leader()) return;
  auto model = models::make_model(config.model);
  torch::NoGradGuard no_grad;
  for (auto& item : model->named_parameters(true)) item.value().copy_(full.at(item.key()));
  const std::string prompt = "And God said";
  std::string text = generate_text(*model, prompt, 200, /*temperature=*/0.8,
                                   static_cast<uint64_t>(config.train.seed), config.model.seq_len);
  for (char& c : text)
    if (c != '\n' && (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e)) c = '?';
  std::printf("sample (temperature 0.8, prompt \"%s\"):\n%s\n", prompt.c_str(), text.c_str());
  std::fflush(stdout);
}

}  // namespace paratorch::train
