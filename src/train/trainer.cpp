// src/train/trainer.cpp — the Trainer: which runner a config gets, and the
// runner of ranks that step together (SyncRunner: one engine step per
// training step). The loop itself is run_loop.cpp's.
#include "train/trainer.h"
#include "train/train_step.h"

#include "train/hogwild_runner.h"
#include "train/ps_trainer.h"
#include "train/run_loop.h"

#include "data/dataset.h"
#include "models/registry.h"
#include "report/metrics.h"
#include "report/progress.h"
#include "report/trace.h"
#include "parallel/pipeline/schedule.h"
#include "parallel/pipeline/timeline.h"
#include "train/checkpoint.h"
#include "checkpoint/sharded_folder.h"
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

// Validation uses the first kValidationBatches global batches of held-out samples.
constexpr int kValidationBatches = 4;

// Which runner takes a config's steps. Every mode whose ranks step together
// takes them through an engine (make_engine): sync layouts, and the
// bulk-synchronous parameter server (ps, staleness 0:
// parallel/async/ps_engine.h), so `train` is the path `verify` checks —
// clipping the global gradient norm once per step, checkpointing whole
// tensors. Hogwild's threads step on their own (hogwild_runner.h); in the
// asynchronous parameter server the workers do, and the servers run the
// loop (ps_trainer.h).
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

namespace {

// Ranks that step together: each step through the layout's engine.
class SyncRunner : public StepRunner {
 public:
  SyncRunner(World& w, Config c)
      : world_(w),
        config_(std::move(c)),
        groups_(w.comm(), run_layout(config_.parallel, w.size())),
        batches_(config_.data.global_batch, 0, 1) {
    dataset_ = data::make_dataset(config_.data.source, config_.model, static_cast<uint64_t>(config_.train.seed));
    engine_ = make_engine(config_, groups_, models::make_model(config_.model), *dataset_, w.device());
    optimizer_ = engine_->build_optimizer(config_.optim);
    schedule_ = optim::LrSchedule{config_.optim.lr, config_.optim.warmup_steps, config_.train.steps};
  }

  World& world() override { return world_; }
  const Config& config() const override { return config_; }
  const data::Dataset& dataset() const override { return *dataset_; }
  int64_t begin(const std::string& resume_dir) override { return resume_dir.empty() ? 0 : resume(resume_dir); }
  void announce(int64_t start) override;
  StepOutcome step(int64_t s) override;
  Validation validate() override;
  void checkpoint(int64_t steps_done) override;
  void finish() override;

 private:
  bool leader() const { return world_.rank() == 0; }
  std::string out(const std::string& file) const { return config_.train.out_dir + "/" + file; }
  int64_t resume(const std::string& dir);
  void print_sample();

  World& world_;
  Config config_;
  ProcessGroups groups_;
  std::unique_ptr<data::Dataset> dataset_;
  std::unique_ptr<parallel::Engine> engine_;
  std::unique_ptr<optim::Optimizer> optimizer_;
  optim::LrSchedule schedule_;
  DistributedSampler batches_;    // global view: the engine takes its own slice
  int64_t total_comm_bytes_ = 0;  // comm_bytes_sent() over this run's steps so far (communicator.h)
};

// ---- set-up -------------------------------------------------------------------

// Restores parameters, optimizer state and RNG from a checkpoint; returns its
// step. The data needs no state of its own: the batch of step s is a pure
// function of (seed, s), so continuing at s continues the exact sequence.
int64_t SyncRunner::resume(const std::string& dir) {
  // A sharded checkpoint: this rank reads only the parameters it holds,
  // and of a tp-sharded one only its shard where the split is the same.
  checkpoints::Checkpoint ckpt = read_checkpoint_to_resume(dir, engine_->parameters_to_load());
  require_compatible(ckpt, config_);
  engine_->load_full_parameters(ckpt.model);
  optimizer_->load_state_tensors(ckpt.optimizer);
  engine_->load_checkpoint_state(ckpt.optimizer);  // the fp16 loss scaler
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

void SyncRunner::announce(int64_t start) {
  std::printf("paratorch train: %s with %lld parameters; data %s\n", config_.model.name.c_str(),
              static_cast<long long>(engine_->parameter_count()), dataset_->describe().c_str());
  std::printf("paratorch train: %d ranks, layout %s, %s; %d threads/rank on %s; steps %lld..%d -> %s\n", world_.size(),
              layout_text(config_.parallel, groups_.layout(), world_.size()).c_str(), engine_->describe().c_str(),
              world_.threads(), world_.device().str().c_str(), static_cast<long long>(start), config_.train.steps,
              config_.train.out_dir.c_str());
  std::printf(
      "paratorch train: estimated memory per rank: %s\n",
      zero::estimate_memory(memory_estimate_options(config_), engine_->local_parameter_count(), groups_.layout().dp)
          .line()
          .c_str());
  std::fflush(stdout);
}

// ---- one step -------------------------------------------------------------------

StepOutcome SyncRunner::step(int64_t s) {
  const int64_t bytes0 = comm_bytes_sent();
  // The trainer slices the global batch; the engine computes what it is given.
  const auto microbatches = parallel::local_microbatches(*engine_, *dataset_, batches_.global_indices(s));
  const StepResult r = take_step(*engine_, *optimizer_, microbatches, schedule_.at(s), config_.optim.grad_clip, s + 1);
  StepOutcome o;
  o.loss = r.loss;
  o.lr = schedule_.at(s);
  o.grad_norm = r.grad_norm;
  for (const auto& [key, value] : engine_->step_metrics()) o.extra[key] = value;
  // Bytes this rank sent during the step (ring-algorithm count), and since the run started.
  const int64_t bytes = comm_bytes_sent() - bytes0;
  total_comm_bytes_ += bytes;
  o.counters["comm_bytes"] = static_cast<double>(bytes);
  o.counters["comm_bytes_total"] = static_cast<double>(total_comm_bytes_);
  return o;
}

Validation SyncRunner::validate() {
  report::Tracer::Span span("validation", "compute");
  std::vector<int64_t> ids;
  for (int64_t i = 0; i < kValidationBatches * config_.data.global_batch; ++i) ids.push_back(i);
  Validation sum;
  for (int b = 0; b < kValidationBatches; ++b) {
    const auto first = ids.begin() + b * config_.data.global_batch;
    parallel::EvalResult r = engine_->evaluate(parallel::local_validation_batch(
        *engine_, *dataset_, std::vector<int64_t>(first, first + config_.data.global_batch)));
    sum.loss += r.loss / kValidationBatches;
    sum.accuracy = r.accuracy < 0 ? -1 : std::max(0.0, sum.accuracy) + r.accuracy / kValidationBatches;
  }
  return sum;
}

// ---- checkpoints and the end of the run -------------------------------------------

// Sharded: every rank writes what it holds, in parallel (engines that
// cannot say gather whole tensors and spread the writing); rank 0 commits.
void SyncRunner::checkpoint(int64_t steps_done) {
  report::Tracer::Span span("checkpoint", "io");
  const int rank = world_.comm()->rank(), size = world_.comm()->size();
  auto pieces = engine_->checkpoint_pieces(*optimizer_);
  if (!pieces)
    pieces = checkpoints::spread_whole_tensors(engine_->full_parameters(),
                                               engine_->full_optimizer_state(optimizer_->state_tensors()), rank, size);
  // State equal on every rank (the fp16 loss scaler, the CPU generator): rank 0's.
  std::map<std::string, torch::Tensor> global = engine_->checkpoint_state();
  {
    at::Generator cpu = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(cpu.mutex());
    global["trainer.rng_cpu"] = cpu.get_state();
  }
  if (rank == 0) {
    auto more = checkpoints::spread_whole_tensors({}, global, 0, 1);
    pieces->insert(pieces->end(), more.begin(), more.end());
  }
  checkpoints::ShardedCheckpointInfo info{steps_done, layout_text(config_.parallel, groups_.layout(), size),
                                          to_toml(config_)};
  checkpoints::write_sharded_checkpoint(config_.train.out_dir + "/checkpoints", *pieces, info, *world_.comm());
}

void SyncRunner::finish() {
  if (leader() && groups_.layout().pp > 1) {  // measured bubble and pipeline.svg (docs/pipeline.md)
    const auto& p = config_.parallel;
    const double theory = pipeline::theoretical_bubble(p.schedule, pipeline::shape_for(p.schedule, p.pp, p.microbatches, p.virtual_stages));
    const std::string line =
        pipeline::write_pipeline_report(out("trace.json"), out("pipeline.svg"), groups_.layout(), theory);
    if (!line.empty()) std::printf("%s\n", line.c_str());
  }
  if (models::model_family(config_.model.name).text_sample) print_sample();
}

// A text sample from the trained weights. Layout-independent: rank 0 loads
// the full parameters into a fresh single-process copy of the model.
void SyncRunner::print_sample() {
  auto full = engine_->full_parameters();
  if (!leader()) return;
  auto model = models::make_model(config_.model);
  torch::NoGradGuard no_grad;
  for (auto& item : model->named_parameters(true)) item.value().copy_(full.at(item.key()));
  const std::string prompt = "And God said";
  std::string text = generate_text(*model, prompt, 200, /*temperature=*/0.8, static_cast<uint64_t>(config_.train.seed),
                                   config_.model.seq_len);
  for (char& c : text)
    if (c != '\n' && (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e)) c = '?';
  std::printf("sample (temperature 0.8, prompt \"%s\"):\n%s\n", prompt.c_str(), text.c_str());
  std::fflush(stdout);
}

}  // namespace

Trainer::Trainer(World& world, Config config) : world_(world) {
  if (steps_together(config))
    runner_ = std::make_unique<SyncRunner>(world, std::move(config));
  else if (config.parallel.mode == "hogwild")
    runner_ = async::make_hogwild_runner(world, std::move(config));
  else
    async_config_ = std::make_unique<Config>(std::move(config));
}
Trainer::~Trainer() = default;

TrainResult Trainer::run(const std::string& resume_dir) {
  if (!runner_) return async::run_parameter_server(world_, *async_config_, resume_dir);
  return run_loop(*runner_, resume_dir);
}

}  // namespace paratorch::train
