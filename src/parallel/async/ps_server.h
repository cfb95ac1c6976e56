// src/parallel/async/ps_server.h — one parameter-server rank: holds its shard of the
// parameters and the optimizer state for it, and applies workers' gradients.
//
// Consistency (Ho et al., 2013, "More effective distributed ML via a stale
// synchronous parallel parameter server"): a worker's clock is the number of
// gradients it has pushed. A PULL for step t is answered once
//   t - min(clock of live workers) <= staleness
// and held until then otherwise; staleness < 0 answers at once (asynchronous).
// staleness = 0 is bulk-synchronous: the server sums the W pushes of step t
// and applies their mean as ONE optimizer step before any pull for t + 1 is
// answered — exactly synchronous data-parallel SGD over the global batch.
// With staleness != 0 every push is applied as it arrives (one optimizer step
// per push, at the learning rate of the pusher's step), as asynchronous SGD
// does; the staleness of each applied gradient (server updates since the
// version the worker computed it on) goes into a histogram.
//
// A worker is declared lost when staleness != 0 and it is silent for longer
// than [comm] timeout_s, or sooner when it says it leaves (LEAVE), when its
// process is gone (same node: /proc), or when a payload it announced never
// follows: the others continue without it, and nothing the server sends it
// can block (replies are posted, not waited for). Under bulk-synchronous
// consistency a lost worker ends the job (the step can not complete).
#pragma once
#include "parallel/async/ps_inbox.h"
#include "parallel/async/ps_protocol.h"
#include "parallel/async/shard_plan.h"
#include "optim/lr_schedule.h"
#include "optim/optimizer.h"
#include <paratorch/communicator.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace paratorch::async {

/// What a server updates its shard with: built over the shard's leaf
/// tensors, stepped once their .grad holds the gradient to apply. The CLI
/// plugs in the [optim] optimizer (config_optimizer); the public
/// ParameterServer plugs in the user's torch::optim optimizer.
class ShardOptimizer {
 public:
  virtual ~ShardOptimizer() = default;
  /// One update of every piece for the pusher's global step `step` (so a
  /// schedule can pick that step's learning rate).
  virtual void step(int64_t step) = 0;
  /// Steps taken so far (a restored shard's version).
  virtual int64_t steps_taken() const = 0;
  /// The state tensors it keeps per piece ("exp_avg", ...); empty where it
  /// names none.
  virtual std::vector<std::string> state_kinds() const { return {}; }
  /// State by key for checkpoints; empty where the optimizer keeps none by name.
  virtual std::map<std::string, torch::Tensor> state_tensors() const { return {}; }
  virtual void load_state_tensors(const std::map<std::string, torch::Tensor>& state) { (void)state; }
};

/// Builds a server's optimizer over its shard: leaf tensors by piece key,
/// and the pieces they hold (Piece::param says whose rows).
using ShardOptimizerFactory = std::function<std::unique_ptr<ShardOptimizer>(
    const std::vector<std::pair<std::string, torch::Tensor>>& shard, const std::vector<Piece>& pieces)>;

/// The [optim] optimizer, at `schedule`'s learning rate for each step.
ShardOptimizerFactory config_optimizer(optim::OptimizerOptions optim, optim::LrSchedule schedule);

struct ServerOptions {
  int workers = 1;
  int staleness = 0;
  double timeout_s = 300;
  std::string timeout_option = "ServerOptions::timeout_s";  // what errors tell the user to change
  int64_t session = 0;  // Header::session of this job's messages
  /// May stay empty only with defer_apply (the caller steps the shard).
  ShardOptimizerFactory make_optimizer;
  int64_t steps = 1;  // each worker's steps; a worker's DONE means it reached them
  /// Asynchronous work sharing (server 0 with staleness < 0): each pull
  /// reply hands out the next slot of the run, slot g = samples of worker
  /// g % W's share of global step g / W, until steps x W are handed out.
  /// So a fast worker takes more slots than a straggler and the job ends
  /// when the samples are done, not when the slowest worker is.
  bool assign_slots = false;
  /// Engine mode (ps_engine.h, bulk-synchronous only): a completed round
  /// leaves the mean gradient in .grad of the shard tensors (named_values)
  /// and the caller's optimizer steps them, as train::take_step does for
  /// every layout — so clipping sees the global norm and lr is the caller's.
  bool defer_apply = false;
  /// Each worker's process id when it runs on this node, else -1: a silent
  /// worker whose process is gone is lost at once, not after timeout_s.
  std::vector<int64_t> local_worker_pids;
};

/// Histogram buckets: staleness 0..kStalenessBuckets-2, the last bucket holds the rest.
constexpr int kStalenessBuckets = 32;

struct ServerStats {
  int64_t applied = 0;          // optimizer steps taken
  int64_t pushes = 0;           // gradients received
  double first_apply_s = 0, last_apply_s = 0;
  std::vector<int64_t> staleness_histogram = std::vector<int64_t>(kStalenessBuckets, 0);
  std::vector<int> lost_workers;  // world ranks
  /// Largest lead of an answered pull: its step minus the slowest unfinished
  /// worker's clock then (at most the staleness bound when it is >= 0).
  int64_t max_lead = 0;
  double apply_rate() const;    // applied steps per second between first and last
};

class Server {
 public:
  /// `index` in [0, plan.servers); `full` holds every parameter's initial value.
  Server(std::shared_ptr<Communicator> world, const ShardPlan& plan, int index,
         const std::map<std::string, torch::Tensor>& full, ServerOptions options);

  /// Serves until every worker has sent DONE or is lost.
  void serve();
  /// Serves until `enough()` holds (checked after each request heard, and
  /// at least every 0.25 s) or serve() would end; returns finished().
  bool serve_until(const std::function<bool()>& enough);
  /// Whether every worker has sent DONE or is lost.
  bool finished() const;
  /// Bulk-synchronous lockstep (PsEngine, ParameterServer::serve_step):
  /// serves until every worker's PUSH of step `step` is handled and the
  /// step's update applied.
  void serve_round(int64_t step);

  /// This shard as tensors by piece key; and the optimizer state by key.
  std::map<std::string, torch::Tensor> shard() const;
  /// The shard's leaf tensors by piece key (what an optimizer steps).
  std::vector<std::pair<std::string, torch::Tensor>> named_values() const;
  std::map<std::string, torch::Tensor> optimizer_state() const {
    return optimizer_ ? optimizer_->state_tensors() : std::map<std::string, torch::Tensor>{};
  }
  std::vector<std::string> optimizer_state_kinds() const {
    return optimizer_ ? optimizer_->state_kinds() : std::vector<std::string>{};
  }
  void load(const std::map<std::string, torch::Tensor>& values, const std::map<std::string, torch::Tensor>& state);
  /// Overwrites this shard from full tensors by parameter name (workers re-pull it).
  void set_values(const std::map<std::string, torch::Tensor>& full);
  /// Every worker's clock starts at `step` (a resumed run).
  void start_at(int64_t step);
  /// Steps every live worker has pushed (the slowest clock).
  int64_t min_clock() const;
  const std::vector<Piece>& pieces() const { return pieces_; }
  const ServerStats& stats() const { return stats_; }
  /// Latest loss each worker (index = world rank - servers) pushed (NaN before its first push).
  const std::vector<double>& worker_losses() const { return losses_; }
  /// Worker REPORT messages (steps, seconds, loss) received by serve(), by worker.
  const std::vector<std::vector<double>>& reports() const { return reports_; }
  /// Called after each push is handled (server 0 logs metrics from it).
  /// `validation`: the validation loss the worker measured on the
  /// parameters it pulled for `step` (NaN when it measured none).
  std::function<void(int64_t worker, int64_t step, double validation)> on_push;

 private:
  void listen();
  void handle(int worker, const Inbox::Request& request);
  void handle_pull(int worker, int64_t step, int64_t version);
  void handle_push(int worker, const Header& h, const torch::Tensor& grad);
  void apply(const torch::Tensor& flat_grad, int64_t step);
  void set_gradients(const torch::Tensor& flat_grad);
  bool pull_allowed(int64_t step) const;
  void answer_ready_pulls();
  void reply(int worker, int64_t step, int64_t version);
  int64_t slowest_unfinished_clock() const;
  void check_silence();
  void lose_worker(size_t w, const std::string& why);
  void drain_outbox();
  /// Called before the shard's values change: replies still reading flat_
  /// keep it, and the shard moves to a fresh copy (copy-on-write).
  void own_values();
  void bind_values(torch::Tensor flat);
  int live_workers() const;

  struct PendingPull {
    int worker;
    int64_t step, version;
  };
  std::shared_ptr<Communicator> world_;
  int index_;
  int first_worker_;  // world rank of worker 0 (= number of servers)
  ServerOptions options_;
  std::vector<Piece> pieces_;
  std::vector<torch::Tensor> values_;  // one leaf per piece, in payload order: views into flat_
  torch::Tensor flat_;                 // the shard, as one buffer (what a reply sends)
  std::vector<WorkHandle> readers_;    // payload sends of replies that read flat_ in flight
  std::unique_ptr<ShardOptimizer> optimizer_;
  int64_t version_ = 0;
  int64_t next_slot_ = 0;
  int64_t numel_ = 0;
  std::vector<int64_t> clock_;
  std::vector<bool> done_, lost_;
  std::vector<double> last_heard_s_, losses_;
  std::vector<std::vector<double>> reports_;
  std::vector<PendingPull> pending_;
  std::vector<std::vector<WorkHandle>> outbox_;  // replies in flight, by worker
  std::vector<WorkHandle> abandoned_;            // to lost workers: never complete
  Inbox inbox_{0};                               // requests heard, not yet handled
  torch::Tensor round_sum_;  // bulk-synchronous: sum of this step's pushes
  int round_count_ = 0;
  ServerStats stats_;
};

/// Full fp32 tensors shaped like `params`, by parameter name, on every rank
/// of `group` (collective): rank s < plan.servers gives the rows of its
/// pieces in `mine` (by piece key), the others give nothing.
std::map<std::string, torch::Tensor> assemble_full(Communicator& group, const ShardPlan& plan,
                                                   const std::map<std::string, torch::Tensor>& mine,
                                                   const std::vector<std::pair<std::string, torch::Tensor>>& params);

/// Every parameter as a full fp32 tensor by name, on every rank of `group`
/// (collective): each server (`server` non-null, its group rank its index)
/// writes its pieces into zeros shaped like `params` and a sum over the
/// group assembles them.
std::map<std::string, torch::Tensor> gather_full(Communicator& group, const ShardPlan& plan, const Server* server,
                                                 const std::vector<std::pair<std::string, torch::Tensor>>& params);

}  // namespace paratorch::async
