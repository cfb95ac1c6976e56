// src/parallel/async/ps_worker.h — one parameter-server worker rank: a full replica
// of the parameters that pulls them from the servers and pushes the
// gradients left in their .grad to the servers that own each piece. What
// computes the gradient is the caller's: the user's code (the public
// ParameterServer) or a bundled model on the dataset (compute_and_push).
#pragma once
#include "parallel/async/shard_plan.h"
#include "data/dataset.h"
#include "models/model.h"
#include <paratorch/communicator.h>

#include <limits>
#include <memory>
#include <string>
#include <vector>

namespace paratorch::async {

struct WorkerOptions {
  int workers = 1;
  double timeout_s = 300;
  std::string timeout_option = "WorkerOptions::timeout_s";  // what errors tell the user to change
  int64_t session = 0;  // Header::session of this job's messages
  double grad_clip = 0;        // per pushed gradient (the worker holds all of it)
  double delay_factor = 1.0;   // injected straggler: sleep (factor - 1) x compute time per step
};

class Worker {
 public:
  /// `params` in the shard plan's order (the model's parameters()).
  Worker(std::shared_ptr<Communicator> world, const ShardPlan& plan, std::vector<torch::Tensor> params,
         WorkerOptions options);

  /// Brings changed shards up to date (blocks while the servers hold the
  /// pull back for staleness). `step` is the step about to be computed.
  /// Returns the slot server 0 handed out (ServerOptions::assign_slots;
  /// -1 when none is left), or 0 when it hands out none.
  int64_t pull(int64_t step);
  /// Pushes the parameters' .grad (zeros where undefined) for `step` to
  /// every server. `loss` and `validation` ride along (NaN: none).
  void push(int64_t step, double loss, double validation = std::numeric_limits<double>::quiet_NaN());
  /// Tells every server this worker is finished.
  void done();
  /// Sends (steps, seconds, final loss) to server 0 for the run summary.
  void report(int64_t steps, double seconds, double loss);
  const WorkerOptions& options() const { return options_; }
  const std::vector<torch::Tensor>& params() const { return params_; }

 private:
  static int server_rank(int s) { return s; }  // servers are world ranks [0, S)
  /// How long a reply or a push may take (patience_s(), ps_worker.cpp).
  double patience_s() const;
  std::string patience_text() const;
  std::shared_ptr<Communicator> world_;
  ShardPlan plan_;
  WorkerOptions options_;
  std::vector<torch::Tensor> params_;  // model order
  std::vector<int64_t> versions_;      // per server: version of our copy (-1: none)
  /// The parameters' memory, in model order (fp32 models): the model's
  /// parameters are views into it, and server s's rows are the contiguous
  /// range at flat_offset_[s] (the shard plan's key order), so a pull reply
  /// is received straight into the parameters, with no staging copy.
  /// Undefined when the parameters are not all fp32 (then pulls copy).
  torch::Tensor flat_;
  std::vector<int64_t> flat_offset_;
};

/// A bundled model's step on a worker: the gradient of the mean loss over
/// `batch` (clipped to options().grad_clip, slowed by delay_factor), pushed
/// for `step`; returns the loss.
double compute_and_push(Worker& worker, models::BundledModel& model, const models::Batch& batch, int64_t step,
                        double validation = std::numeric_limits<double>::quiet_NaN());

/// Tells servers [0, servers) that this worker fails and leaves (best
/// effort, waits at most a second): they drop it at once instead of after
/// [comm] timeout_s of silence.
void leave_servers(Communicator& world, int servers);

}  // namespace paratorch::async
