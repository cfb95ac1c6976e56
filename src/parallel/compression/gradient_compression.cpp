// src/parallel/compression/gradient_compression.cpp — see gradient_compression.h.
#include "parallel/compression/gradient_compression.h"

#include <paratorch/errors.h>

namespace paratorch::parallel {
namespace {

const std::string kRankPrefix = "dp_ranks.";

/// optim::Optimizer over OneBitAdam (the trainer's interface: step, state by name).
class OneBitAdamOptimizer final : public optim::Optimizer {
 public:
  explicit OneBitAdamOptimizer(std::shared_ptr<OneBitAdam> inner) : inner_(std::move(inner)) {}
  void step(double lr, double grad_scale) override {
    inner_->step(lr, grad_scale);
    steps_ = inner_->steps();
  }
  // The replicated state only: the error compensation is each rank's own
  // and travels through GradientCompression::checkpoint_state.
  std::map<std::string, torch::Tensor> state_tensors() const override {
    auto state = inner_->state_tensors();
    state.erase("onebit.worker_error");
    state.erase("onebit.server_error");
    return state;
  }
  void load_state_tensors(const std::map<std::string, torch::Tensor>& state) override {
    auto mine = state;
    mine.erase("onebit.worker_error");  // never rank 0's errors for every rank
    mine.erase("onebit.server_error");
    inner_->load_state_tensors(mine);
    steps_ = inner_->steps();
  }

 private:
  std::shared_ptr<OneBitAdam> inner_;
};

}  // namespace

void CompressionOptions::validate() const {
  if (kind == CompressionKind::kPowerSGD) powersgd.validate();
  if (kind == CompressionKind::kOneBitAdam) onebit.validate();
}

GradientCompression::GradientCompression(CompressionOptions options, std::shared_ptr<Communicator> dp)
    : options_(std::move(options)), dp_(std::move(dp)) {
  options_.validate();
}

void GradientCompression::install(DistributedDataParallel& ddp, const optim::NamedTensors& params) {
  if (options_.kind != CompressionKind::kPowerSGD) return;
  powersgd_ = std::make_shared<PowerSGDState>(options_.powersgd);
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes;
  for (const auto& [name, p] : params) shapes.emplace_back(name, p.sizes().vec());
  powersgd_->check_shapes(shapes);
  ddp.register_comm_hook(comm_hooks::powersgd(powersgd_));
}

std::unique_ptr<optim::Optimizer> GradientCompression::make_optimizer(const optim::OptimizerOptions& options,
                                                                      optim::NamedTensors params,
                                                                      DistributedDataParallel& ddp) {
  if (options_.kind != CompressionKind::kOneBitAdam) return nullptr;
  if (options.kind != optim::OptimizerKind::kAdamW)
    throw UsageError(std::string("paratorch: OptimizerOptions::kind = ") + optim::optimizer_kind_name(options.kind) +
                     " cannot run as 1-bit Adam; use adamw, or another compression");
  OneBitAdamOptions onebit = options_.onebit;
  onebit.weight_decay = options.weight_decay;
  auto inner = std::make_shared<OneBitAdam>(std::move(params), ddp, onebit);
  onebit_ = inner;
  return std::make_unique<OneBitAdamOptimizer>(std::move(inner));
}

std::map<std::string, torch::Tensor> GradientCompression::rank_state() const {
  if (powersgd_) return powersgd_->state_tensors();
  if (auto onebit = onebit_.lock()) {
    auto all = onebit->state_tensors();
    return {{"onebit.worker_error", all.at("onebit.worker_error")}, {"onebit.server_error", all.at("onebit.server_error")}};
  }
  return {};
}

std::map<std::string, torch::Tensor> GradientCompression::checkpoint_state() {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [key, tensor] : rank_state()) {  // the same keys and shapes on every rank
    auto mine = tensor.detach().contiguous().reshape(-1).cpu();
    auto stacked = torch::empty({dp_->size() * mine.numel()}, mine.options());
    dp_->all_gather(stacked, mine);
    auto shape = tensor.sizes().vec();
    shape.insert(shape.begin(), dp_->size());
    out[kRankPrefix + key] = stacked.view(shape);
  }
  return out;
}

void GradientCompression::load_checkpoint_state(const std::map<std::string, torch::Tensor>& state) {
  std::map<std::string, torch::Tensor> mine;
  for (const auto& [key, tensor] : state) {
    if (key.rfind(kRankPrefix, 0) != 0) continue;
    if (tensor.dim() < 1 || tensor.size(0) != dp_->size())
      throw UsageError("paratorch: the checkpoint's compressor state '" + key.substr(kRankPrefix.size()) +
                       "' was written by " + std::to_string(tensor.dim() ? tensor.size(0) : 0) +
                       " data-parallel ranks and this run has " + std::to_string(dp_->size()) +
                       "; resume with that many, or without compression");
    mine[key.substr(kRankPrefix.size())] = tensor.select(0, dp_->rank());
  }
  if (mine.empty()) return;  // written without a compressor: start it fresh
  load_rank_state(mine);
}

void GradientCompression::load_rank_state(const std::map<std::string, torch::Tensor>& state) {
  if (powersgd_) {
    if (state.count("powersgd.passes")) powersgd_->load_state_tensors(state);
    return;
  }
  auto onebit = onebit_.lock();
  if (!onebit || !state.count("onebit.worker_error")) return;
  auto full = onebit->state_tensors();  // the replicated part as loaded, plus this rank's errors
  for (const auto& [key, tensor] : state) full[key] = tensor;
  onebit->load_state_tensors(full);
}

std::map<std::string, double> GradientCompression::step_metrics() const {
  if (powersgd_) return {{"compressing", powersgd_->compressing() ? 1.0 : 0.0}};
  if (auto onebit = onebit_.lock()) return {{"compressing", onebit->steps() > options_.onebit.freeze_step ? 1.0 : 0.0}};
  return {};
}

std::string GradientCompression::describe() const {
  switch (options_.kind) {
    case CompressionKind::kPowerSGD:
      return "PowerSGD rank " + std::to_string(options_.powersgd.rank) + " after step " +
             std::to_string(options_.powersgd.start_step);
    case CompressionKind::kOneBitAdam:
      return "1-bit Adam, variance frozen at step " + std::to_string(options_.onebit.freeze_step);
    case CompressionKind::kNone: break;
  }
  return "";
}

}  // namespace paratorch::parallel
