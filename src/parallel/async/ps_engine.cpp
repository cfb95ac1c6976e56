// src/parallel/async/ps_engine.cpp — see ps_engine.h.
#include "parallel/async/ps_engine.h"

#include "parallel/async/ps_faults.h"
#include "parallel/grad_norm.h"
#include "optim/lr_schedule.h"
#include <paratorch/errors.h>

namespace paratorch::async {
namespace {

// A server's optimizer keeps its state by piece key ("name" or
// "name@rowsA-B"); a checkpoint keeps it by parameter name, whole (any
// layout's). Loading takes this server's rows of each whole tensor.
class PieceStateOptimizer final : public optim::Optimizer {
 public:
  PieceStateOptimizer(std::unique_ptr<optim::Optimizer> inner, std::vector<Piece> pieces)
      : inner_(std::move(inner)), pieces_(std::move(pieces)) {}
  void step(double lr, double grad_scale) override {
    inner_->step(lr, grad_scale);
    steps_ = inner_->steps_taken();
  }
  std::map<std::string, torch::Tensor> state_tensors() const override { return inner_->state_tensors(); }
  void load_state_tensors(const std::map<std::string, torch::Tensor>& state) override {
    inner_->load_state_tensors(pieces_from_whole(state, pieces_));  // names what is missing or mis-shaped
    steps_ = inner_->steps_taken();
  }

 private:
  std::unique_ptr<optim::Optimizer> inner_;
  std::vector<Piece> pieces_;
};

// The per-parameter state kinds of `options`' optimizer ("<parameter>.<kind>",
// optimizer.h), read off one built over a probe tensor: workers hold no
// state of their own to read them from.
std::vector<std::string> state_kinds(const optim::OptimizerOptions& options) {
  const std::string probe = "probe.";
  std::vector<std::string> kinds;
  for (const auto& [key, t] : optim::make_optimizer(options, {{"probe", torch::zeros({1})}})->state_tensors())
    if (key.compare(0, probe.size(), probe) == 0) kinds.push_back(key.substr(probe.size()));
  return kinds;
}

}  // namespace

void PsEngineOptions::validate(int world_size) const {
  if (servers < 1 || servers >= world_size)
    throw UsageError("paratorch: PsEngineOptions::servers = " + std::to_string(servers) + " must be >= 1 and below the " +
                     "world size " + std::to_string(world_size) + " (the other ranks are the workers)");
  if (steps < 1) throw UsageError("paratorch: PsEngineOptions::steps must be >= 1, got " + std::to_string(steps));
  if (!(timeout_s > 0)) throw UsageError("paratorch: PsEngineOptions::timeout_s must be > 0");
}

PsEngine::PsEngine(PsEngineOptions o, const ProcessGroups& groups, std::shared_ptr<models::BundledModel> model)
    : world_(groups.world()), model_(std::move(model)) {
  o.validate(world_->size());
  servers_ = o.servers;
  workers_ = world_->size() - o.servers;
  model_->initialize(o.seed);
  std::vector<std::pair<std::string, torch::Tensor>> named;
  std::map<std::string, torch::Tensor> full;
  for (const auto& item : model_->named_parameters(true)) {
    named.emplace_back(item.key(), item.value());
    full[item.key()] = item.value().detach();
  }
  plan_ = plan_shards(named, servers_);
  if (world_->rank() < servers_) {
    ServerOptions options;
    options.workers = workers_;
    options.staleness = 0;
    options.timeout_s = o.timeout_s;
    options.timeout_option = "PsEngineOptions::timeout_s";
    options.steps = o.steps;
    options.defer_apply = true;
    server_ = std::make_unique<Server>(world_, plan_, world_->rank(), full, options);
  } else {
    WorkerOptions options;
    options.workers = workers_;
    options.timeout_s = o.timeout_s;
    options.timeout_option = "PsEngineOptions::timeout_s";
    options.grad_clip = 0;  // the caller clips the global norm on the servers
    const Injection inj = read_injection();  // bench/async_compare's straggler
    if (inj.straggler_rank == world_->rank()) options.delay_factor = inj.factor;
    std::vector<torch::Tensor> params;
    for (const auto& item : model_->named_parameters(true)) params.push_back(item.value());
    worker_ = std::make_unique<Worker>(world_, plan_, std::move(params), options);
  }
}

optim::NamedTensors PsEngine::named_parameters() { return server_ ? server_->named_values() : optim::NamedTensors{}; }

parallel::SumAcross PsEngine::grad_norm_across() {
  auto world = world_;  // the servers' shards are disjoint pieces; workers hold none
  return [world](double local) { return parallel::sum_squares_across(local, {}, {world.get()}); };
}

parallel::BatchShare PsEngine::batch_share() const { return {server_ ? -1 : world_->rank() - servers_, workers_, 1}; }

double PsEngine::forward_backward(const std::vector<models::Batch>& microbatches) {
  double share = 0;
  if (server_) {
    server_->serve_round(step_);
  } else {
    TORCH_CHECK(microbatches.size() == 1, "a ps worker computes one batch per round, got ", microbatches.size());
    worker_->pull(step_);
    share = compute_and_push(*worker_, *model_, microbatches.front(), step_) / workers_;
  }
  ++step_;
  auto loss = torch::tensor({share}, torch::kDouble);
  world_->all_reduce(loss, ReduceOp::kSum);
  return loss.item<double>();
}

// Every rank evaluates the current (server) parameters on the whole batch.
parallel::EvalResult PsEngine::evaluate(const models::Batch& batch) {
  load_full_parameters(full_parameters());
  torch::NoGradGuard no_grad;
  model_->eval();
  const parallel::EvalResult r = parallel::score_output(*model_, model_->forward(batch.input), batch);
  model_->train();
  return r;
}

std::unique_ptr<optim::Optimizer> PsEngine::build_optimizer(const optim::OptimizerOptions& options) {
  state_kinds_ = state_kinds(options);
  return std::make_unique<PieceStateOptimizer>(optim::make_optimizer(options, named_parameters()),
                                               server_ ? server_->pieces() : std::vector<Piece>{});
}

// Each kind assembled from the servers' pieces as full_parameters() is; the
// step count is server 0's (rank 0's: workers' optimizers never step).
std::map<std::string, torch::Tensor> PsEngine::full_optimizer_state(const std::map<std::string, torch::Tensor>& local) {
  auto step = torch::zeros({1}, torch::kLong);
  if (auto it = local.find("step"); it != local.end()) step.copy_(it->second.reshape({1}));
  world_->broadcast(step, 0);
  std::map<std::string, torch::Tensor> out{{"step", step.reshape({})}};
  std::vector<std::pair<std::string, torch::Tensor>> params;
  for (const auto& item : model_->named_parameters(true)) params.emplace_back(item.key(), item.value());
  for (const auto& kind : state_kinds_) {
    std::map<std::string, torch::Tensor> mine;
    if (server_)
      for (const auto& piece : server_->pieces()) mine[piece.key] = local.at(piece.key + "." + kind);
    for (auto& [name, full] : assemble_full(*world_, plan_, mine, params)) out[name + "." + kind] = full;
  }
  return out;
}

std::map<std::string, torch::Tensor> PsEngine::full_parameters() {
  std::vector<std::pair<std::string, torch::Tensor>> params;
  for (const auto& item : model_->named_parameters(true)) params.emplace_back(item.key(), item.value());
  return gather_full(*world_, plan_, server_.get(), params);
}

void PsEngine::load_full_parameters(const std::map<std::string, torch::Tensor>& tensors) {
  torch::NoGradGuard no_grad;
  for (auto& item : model_->named_parameters(true)) {
    auto it = tensors.find(item.key());
    if (it == tensors.end() || it->second.sizes() != item.value().sizes())
      throw RuntimeFailure("paratorch: no tensor '" + item.key() + "' of shape " + c10::str(item.value().sizes()) +
                           " to load into the ps engine");
    item.value().copy_(it->second);
  }
  if (server_) server_->set_values(tensors);
}

int64_t PsEngine::parameter_count() {
  int64_t n = 0;
  for (const auto& p : model_->parameters()) n += p.numel();
  return n;
}

std::string PsEngine::describe() {
  std::string sizes;
  for (int s = 0; s < servers_; ++s) sizes += (s ? "/" : "") + std::to_string(plan_.numel_of(s));
  return "parameter server, bulk-synchronous: " + std::to_string(servers_) + " server(s) holding " + sizes +
         " floats, " + std::to_string(workers_) + " worker(s)";
}

}  // namespace paratorch::async
