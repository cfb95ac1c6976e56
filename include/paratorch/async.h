// paratorch/async.h — asynchronous training of any torch::nn::Module: a
// parameter server (bulk-synchronous, stale-synchronous or fully
// asynchronous) over a group of ranks, and Hogwild over the threads of one
// process.
//
// Parameter server (Li et al., OSDI 2014; consistency models after Ho et
// al., NIPS 2013, "More effective distributed ML via a stale synchronous
// parallel parameter server"). Group ranks [0, servers) are servers, each
// holding a contiguous range of the parameters' rows and the optimizer for
// them; the other ranks are workers, each with a full replica:
///   paratorch::World world(argc, argv);
///   torch::manual_seed(0);
///   auto model = std::make_shared<Net>();                 // the same on every rank
///   auto opt = std::make_shared<torch::optim::SGD>(model->parameters(), 0.1);
///   paratorch::ParameterServerOptions o;
///   o.staleness = 2;                                      // SSP: at most 2 steps ahead
///   paratorch::ParameterServer ps(model, opt, world.comm(), o);
///   if (ps.is_server()) {
///     ps.serve();                                         // until every worker finished
///   } else {
///     for (int64_t step = 0; step < steps; ++step) {
///       ps.pull();                                        // fresh parameters into `model`
///       auto loss = torch::mse_loss(model->forward(x_of(step)), y_of(step));
///       loss.backward();
///       ps.push(loss.item<double>());                     // gradients to the servers
///     }
///     ps.finish();
///   }
///   auto trained = ps.full_parameters();                  // collective: every rank
///   paratorch::save_checkpoint("ckpt", ps.training_state(steps), world.comm().get());
// A checkpoint holds whole tensors by name (the servers' rows joined, their
// optimizer state too), so it resumes a parameter server of any server
// count (ps.load(paratorch::load_checkpoint("ckpt")) before the first pull
// or serve) or a plain module and optimizer (paratorch/checkpoint.h).
//
// Hogwild (Niu, Recht, Ré & Wright, NIPS 2011): threads of one process share
// one module and update it with plain SGD, without locks:
///   paratorch::HogwildOptions h;
///   h.steps = 1000;
///   h.lr = 0.05;
///   paratorch::hogwild(model, /*threads=*/4, [&](int64_t step) {
///     return torch::mse_loss(model->forward(x_of(step)), y_of(step)); }, h);
#pragma once
#include <paratorch/checkpoint.h>
#include <paratorch/communicator.h>

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace paratorch {

struct ParameterServerOptions {
  /// How far a worker may run ahead of the slowest one: 0 = bulk-synchronous
  /// (each step's gradients of all workers are averaged into ONE update,
  /// exactly synchronous data-parallel SGD), k > 0 = stale-synchronous (a
  /// pull for step t waits until every worker pushed step t - k - 1), -1 =
  /// fully asynchronous (no waiting; every push is applied as it arrives).
  int staleness = 0;
  /// Server ranks: group ranks [0, servers). At most group size - 1.
  int servers = 1;
  /// Seconds a worker waits for a server's reply (x 2), and a server for a
  /// silent worker before it counts it lost: then a bulk-synchronous job
  /// fails, a stale-synchronous or asynchronous one goes on without it.
  double timeout_s = 300;
  /// Learning rate of global step `step` (the pushing worker's step); unset
  /// keeps the optimizer's own lr.
  std::function<double(int64_t step)> lr_at;
  /// Throws UsageError naming the field when a value is out of range.
  void validate() const;
};

/// What the servers did (on a server rank: its own shard).
struct ParameterServerStats {
  int64_t updates = 0;  // optimizer steps taken
  int64_t pushes = 0;   // gradients received
  /// Applied gradients by staleness (server updates between the worker's
  /// pull and its push): index k counts staleness k, the last bucket the rest.
  std::vector<int64_t> staleness_histogram;
  /// Largest (step of an answered pull) - (slowest unfinished worker's
  /// pushed steps): never above ParameterServerOptions::staleness when >= 0.
  int64_t max_lead = 0;
  std::vector<int> lost_workers;  // group ranks
};

namespace async {
class Server;
class Worker;
struct ShardPlan;
}  // namespace async

class ParameterServer {
 public:
  /// Builds a server's optimizer over its shard (tensors holding rows of the
  /// module's parameters, in the module's parameter order).
  using OptimizerFactory =
      std::function<std::shared_ptr<torch::optim::Optimizer>(std::vector<torch::Tensor> shard)>;

  /// `optimizer` is built over module->parameters() and not stepped yet
  /// (every rank builds one; workers never step it). A server re-points its
  /// param groups at the rows it owns, keeping each group's options.
  /// Collective over `group`: broadcasts group rank 0's parameters.
  ParameterServer(std::shared_ptr<torch::nn::Module> module, std::shared_ptr<torch::optim::Optimizer> optimizer,
                  std::shared_ptr<Communicator> group, ParameterServerOptions options = {});
  /// The same with an optimizer built per server by `make_optimizer`.
  ParameterServer(std::shared_ptr<torch::nn::Module> module, OptimizerFactory make_optimizer,
                  std::shared_ptr<Communicator> group, ParameterServerOptions options = {});
  /// A worker that did not call finish() finishes here (errors ignored).
  ~ParameterServer();
  ParameterServer(const ParameterServer&) = delete;
  ParameterServer& operator=(const ParameterServer&) = delete;

  bool is_server() const { return server_ != nullptr; }
  bool is_worker() const { return worker_ != nullptr; }
  int servers() const { return options_.servers; }
  int workers() const { return workers_; }
  /// This worker's index in [0, workers()); -1 on a server.
  int worker_index() const;

  // ---- workers ----
  /// Brings the module's parameters up to date for the next step; blocks
  /// while the staleness bound holds this worker back.
  void pull();
  /// Sends every parameter's .grad to its server, then resets the gradients
  /// (as zero_grad(set_to_none)). `loss` is reported to the servers.
  /// UsageError naming a parameter that received no gradient.
  void push(double loss = std::numeric_limits<double>::quiet_NaN());
  /// Tells the servers this worker is done (serve() returns when all are).
  void finish();
  /// Steps this worker pushed.
  int64_t step() const { return step_; }

  // ---- servers ----
  /// Serves pulls and pushes until every worker finished or was lost.
  void serve();
  /// Bulk-synchronous only: serves one step (every worker's pull and push)
  /// and applies it, so servers and workers can advance in lockstep.
  void serve_step();
  ParameterServerStats stats() const;

  // ---- every rank ----
  /// Every managed parameter's current value on the servers, by its name
  /// in the module. Collective over the group.
  std::map<std::string, torch::Tensor> full_parameters();
  /// full_parameters() copied into the module on every rank. Collective.
  void load_into_module();
  /// What a checkpoint of the job holds, on every rank (collective): the
  /// managed parameters' current values, and the servers' optimizer state
  /// with each parameter's rows joined, by the module's names
  /// ("<name>.exp_avg", ..., "<name>.step", as optimizer_state_by_name),
  /// at `step`. Call it where no push is in flight: after serve() and
  /// finish(), or between serve_step() rounds. UsageError for an optimizer
  /// whose state paratorch cannot name.
  TrainingState training_state(int64_t step);
  /// Restores a checkpoint of any layout (collective): every rank's module
  /// takes its parameters, each server its rows of them and of the
  /// optimizer state, and the job goes on from state.step (workers' step(),
  /// the learning rate's step). Call it before the first pull() or serve().
  /// RuntimeFailure naming a parameter the checkpoint lacks or a shape
  /// that does not fit.
  void load(const TrainingState& state);

 private:
  friend struct ParameterServerSetup;  // the set-up shared by both constructors (parameter_server.cpp)
  ParameterServer(std::shared_ptr<torch::nn::Module> module, std::shared_ptr<Communicator> group,
                  ParameterServerOptions options);
  void require_worker(const char* call) const;
  void require_server(const char* call) const;

  std::shared_ptr<torch::nn::Module> module_;
  std::shared_ptr<Communicator> group_;
  ParameterServerOptions options_;
  int workers_ = 0;
  std::vector<std::pair<std::string, torch::Tensor>> params_;  // managed: requires_grad, module order
  std::shared_ptr<async::ShardPlan> plan_;
  std::unique_ptr<async::Server> server_;
  std::unique_ptr<async::Worker> worker_;
  int64_t step_ = 0, round_ = 0;
  bool finished_ = false;
};

struct HogwildOptions {
  /// Steps over all threads together: each thread takes the next step number
  /// from a shared counter until `steps` are taken.
  int64_t steps = 100;
  /// First step number (a resumed run); steps [first_step, steps) are run.
  int64_t first_step = 0;
  /// SGD learning rate; lr_at(step) overrides it when set.
  double lr = 0.01;
  std::function<double(int64_t step)> lr_at;
  /// p -= lr * wd * p on parameters of dim >= 2 (not biases).
  double weight_decay = 0;
  /// Each step's gradient is scaled down to this global norm (0 = off).
  double grad_clip = 0;
  /// Called after each update from the thread that made it (concurrently:
  /// make it thread-safe) with the step, its loss and lr.
  std::function<void(int64_t step, double loss, double lr)> on_step;
  /// Throws UsageError naming the field when a value is out of range.
  void validate() const;
};

struct HogwildReport {
  std::vector<int64_t> steps_per_thread;
  double seconds = 0;
};

/// Runs options.steps - options.first_step SGD steps on `module` from
/// `threads` threads sharing its parameters, lock-free: a thread computes
/// the gradient of loss_of(step) (a scalar built from module's forward) on
/// the parameters as they are, and subtracts lr x gradient in place, writing
/// only the rows the gradient touches when those are a minority (the sparse
/// updates Hogwild is made for). torch's intra-op threads are 1 meanwhile.
/// UsageError when threads < 1, when the module has no trainable parameter,
/// or when a step's loss depends on none; RuntimeFailure on a non-finite loss.
HogwildReport hogwild(std::shared_ptr<torch::nn::Module> module, int threads,
                      std::function<torch::Tensor(int64_t step)> loss_of, HogwildOptions options = {});

}  // namespace paratorch
