// src/parallel/async/parameter_server.cpp — the public ParameterServer: the
// user's module and optimizer over the parameter-server mechanics of
// src/async (shard_plan: who holds which rows; ps_server: consistency and
// updates; ps_worker: pull/push of a replica; ps_protocol: the messages).
#include <paratorch/async.h>
#include <paratorch/errors.h>

#include "parallel/async/ps_server.h"
#include "parallel/async/ps_worker.h"
#include "parallel/async/shard_plan.h"
#include "parallel/async/torch_shard_optimizer.h"

#include <atomic>

namespace paratorch {

namespace {
constexpr const char* kTimeoutOption = "ParameterServerOptions::timeout_s";
// Parameter servers built so far in this process. Construction is collective,
// so every rank of a group numbers its servers alike; the number tags their
// messages, so a finished one's late messages (a worker's DONE from its
// destructor) never reach the next one on the same communicator.
std::atomic<int64_t> sessions{0};
}  // namespace

void ParameterServerOptions::validate() const {
  if (staleness < -1)
    throw UsageError("paratorch: ParameterServerOptions::staleness = " + std::to_string(staleness) +
                     " is invalid; use 0 (bulk-synchronous), k > 0 (stale-synchronous) or -1 (asynchronous)");
  if (servers < 1)
    throw UsageError("paratorch: ParameterServerOptions::servers = " + std::to_string(servers) + " must be >= 1");
  if (!(timeout_s > 0))
    throw UsageError("paratorch: ParameterServerOptions::timeout_s = " + std::to_string(timeout_s) + " must be > 0");
}

// Builds the server or the worker of this rank once the optimizer is known.
struct ParameterServerSetup {
  static void start(ParameterServer& ps, const async::ShardOptimizerFactory& make_optimizer) {
    {
      // Every rank starts from group rank 0's values (as DDP does), so the
      // servers' shards agree with each other whatever each rank built.
      torch::NoGradGuard no_grad;
      for (auto& [name, p] : ps.params_) {
        auto buffer = p.detach().contiguous();
        ps.group_->broadcast(buffer, 0);
        if (buffer.data_ptr() != p.data_ptr()) p.detach().copy_(buffer);
      }
    }
    ps.plan_ = std::make_shared<async::ShardPlan>(async::plan_shards(ps.params_, ps.options_.servers));
    const int rank = ps.group_->rank();
    const int64_t session = 1 + sessions++;  // 0: the CLI's runs
    if (rank < ps.options_.servers) {
      async::ServerOptions o;
      o.workers = ps.workers_;
      o.staleness = ps.options_.staleness;
      o.timeout_s = ps.options_.timeout_s;
      o.timeout_option = kTimeoutOption;
      o.session = session;
      o.make_optimizer = make_optimizer;
      std::map<std::string, torch::Tensor> full;
      for (const auto& [name, p] : ps.params_) full[name] = p.detach();
      ps.server_ = std::make_unique<async::Server>(ps.group_, *ps.plan_, rank, full, o);
    } else {
      async::WorkerOptions o;
      o.workers = ps.workers_;
      o.timeout_s = ps.options_.timeout_s;
      o.timeout_option = kTimeoutOption;
      o.session = session;
      std::vector<torch::Tensor> params;
      for (const auto& item : ps.params_) params.push_back(item.second);
      ps.worker_ = std::make_unique<async::Worker>(ps.group_, *ps.plan_, std::move(params), o);
    }
  }
};

ParameterServer::ParameterServer(std::shared_ptr<torch::nn::Module> module, std::shared_ptr<Communicator> group,
                                 ParameterServerOptions options)
    : module_(std::move(module)), group_(std::move(group)), options_(std::move(options)) {
  options_.validate();
  if (!module_) throw UsageError("paratorch: ParameterServer got a null module");
  if (!group_) throw UsageError("paratorch: ParameterServer got a null group");
  workers_ = group_->size() - options_.servers;
  if (workers_ < 1)
    throw UsageError("paratorch: ParameterServerOptions::servers = " + std::to_string(options_.servers) +
                     " leaves no worker in a group of " + std::to_string(group_->size()) + " ranks; use at most " +
                     std::to_string(group_->size() - 1) + " server(s), or launch more ranks");
  for (const auto& item : module_->named_parameters(/*recurse=*/true))
    if (item.value().requires_grad()) params_.emplace_back(item.key(), item.value());
  if (params_.empty())
    throw UsageError("paratorch: the ParameterServer's module has no parameter that requires a gradient; "
                     "there is nothing to train");
}

// Both optimizer forms are checked on every rank, so a misuse fails
// everywhere and not only on the servers that would use it.
ParameterServer::ParameterServer(std::shared_ptr<torch::nn::Module> module,
                                 std::shared_ptr<torch::optim::Optimizer> optimizer,
                                 std::shared_ptr<Communicator> group, ParameterServerOptions options)
    : ParameterServer(std::move(module), std::move(group), std::move(options)) {
  ParameterServerSetup::start(*this, async::repointed_optimizer(std::move(optimizer), params_, options_.lr_at));
}

ParameterServer::ParameterServer(std::shared_ptr<torch::nn::Module> module, OptimizerFactory make_optimizer,
                                 std::shared_ptr<Communicator> group, ParameterServerOptions options)
    : ParameterServer(std::move(module), std::move(group), std::move(options)) {
  ParameterServerSetup::start(*this, async::built_optimizer(std::move(make_optimizer), options_.lr_at));
}

ParameterServer::~ParameterServer() {
  if (!worker_ || finished_) return;
  try {
    finish();
  } catch (const std::exception&) {
    // A destructor must not throw; the servers find this worker silent instead.
  }
}

int ParameterServer::worker_index() const { return worker_ ? group_->rank() - options_.servers : -1; }

void ParameterServer::require_worker(const char* call) const {
  if (!worker_)
    throw UsageError(std::string("paratorch: ParameterServer::") + call + "() is for worker ranks; group rank " +
                     std::to_string(group_->rank()) + " is a server (ranks below ParameterServerOptions::servers = " +
                     std::to_string(options_.servers) + "): call serve() there");
  if (finished_) throw UsageError(std::string("paratorch: ParameterServer::") + call + "() after finish()");
}

void ParameterServer::require_server(const char* call) const {
  if (!server_)
    throw UsageError(std::string("paratorch: ParameterServer::") + call + "() is for server ranks; group rank " +
                     std::to_string(group_->rank()) + " is a worker (ranks from ParameterServerOptions::servers = " +
                     std::to_string(options_.servers) + " on): call pull()/push() there");
}

void ParameterServer::pull() {
  require_worker("pull");
  worker_->pull(step_);
}

void ParameterServer::push(double loss) {
  require_worker("push");
  for (const auto& [name, p] : params_)
    if (!p.grad().defined())
      throw UsageError("paratorch: parameter '" + name + "' received no gradient before ParameterServer::push(); "
                       "call loss.backward() first, or set requires_grad(false) on parameters the loss never uses");
  worker_->push(step_, loss);
  ++step_;
  for (auto& [name, p] : params_) p.mutable_grad() = torch::Tensor();
}

void ParameterServer::finish() {
  require_worker("finish");
  finished_ = true;
  worker_->done();
}

void ParameterServer::serve() {
  require_server("serve");
  server_->serve();
}

void ParameterServer::serve_step() {
  require_server("serve_step");
  if (options_.staleness != 0)
    throw UsageError("paratorch: ParameterServer::serve_step() steps in lockstep and needs "
                     "ParameterServerOptions::staleness = 0 (it is " + std::to_string(options_.staleness) +
                     "); call serve() instead");
  server_->serve_round(round_++);
}

ParameterServerStats ParameterServer::stats() const {
  ParameterServerStats out;
  if (!server_) return out;
  const auto& s = server_->stats();
  out.updates = s.applied;
  out.pushes = s.pushes;
  out.staleness_histogram = s.staleness_histogram;
  out.max_lead = s.max_lead;
  out.lost_workers = s.lost_workers;
  return out;
}

std::map<std::string, torch::Tensor> ParameterServer::full_parameters() {
  return async::gather_full(*group_, *plan_, server_.get(), params_);
}

void ParameterServer::load_into_module() {
  const auto full = full_parameters();
  torch::NoGradGuard no_grad;
  for (auto& [name, p] : params_) p.detach().copy_(full.at(name));
}

}  // namespace paratorch
