// src/parallel/ddp/reducer.h — DDP's gradient reducer: buckets, hooks, overlap.
//
// The gradient of each parameter lives inside a flat per-bucket buffer
// (param.grad aliases its slot), so autograd accumulates straight into the
// buffer and a bucket is sent without copies. On CPU the buckets are slices
// of one buffer from Communicator::allocate_reduce_buffer: on one node a
// shared-memory window whose all-reduce reads the peers' buckets in place, so
// the gradients are never copied at all (comm/symmetric_buffer.h).
// A post-hook on each parameter's gradient accumulator tells the reducer
// when that gradient is final.
//
// One backward pass, as a state machine:
//   Idle --first hook--> Backward --(each bucket full, in order)--> launch
//   all-reduce on the communication thread --engine's end-of-backward
//   callback--> finalize: handle unused parameters, wait, average --> Idle.
// Buckets themselves go Filling -> Launched -> Reduced.
// Buckets launch strictly in index order so every rank issues the same
// sequence of collectives even if gradients arrive in a different order.
// A bucket is launched through the communication hook (ddp.h's CommHook).
//
// Join (uneven inputs): while join is on, every synchronized backward pass
// starts with a one-integer all-reduce of "I am still training" flags: its
// sum is the divisor of that pass. A rank that finished its data answers
// with 0 and then shadows each bucket's reduction with zeros, in the same
// order, until the sum is 0 (everyone is done).
#pragma once
#include <paratorch/communicator.h>
#include <paratorch/ddp.h>

#include <torch/torch.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace paratorch {

class Reducer : public std::enable_shared_from_this<Reducer> {
 public:
  Reducer(std::vector<torch::Tensor> params, std::vector<std::string> names,
          std::shared_ptr<Communicator> comm, DDPOptions options);
  ~Reducer();
  /// Installs the gradient-accumulator hooks (needs shared_from_this).
  void install_hooks();

  void set_sync(bool enabled);
  bool sync_enabled() const { return sync_enabled_; }
  /// Ends the current backward pass: launch what is left, wait, average.
  void finalize();
  const std::vector<BucketLayout>& layouts() const { return layouts_; }
  int64_t reductions_launched() const { return launched_total_; }
  void set_comm_hook(CommHook hook);
  /// Turns the join protocol on (every rank at the same point).
  void enable_join();
  /// Shadows the others' passes until every rank is done; turns join off.
  /// Returns the bucket reductions shadowed.
  int64_t join_until_all_done();
  /// Synchronized backward passes this rank took part in (for Join).
  int64_t passes() const { return passes_; }

 private:
  enum class Phase { kIdle, kBackward };
  enum class BucketState { kFilling, kLaunched, kReduced };
  struct Bucket {
    torch::Tensor flat;                 // every member's gradient, back to back
    std::vector<torch::Tensor> views;   // views[k] aliases member k's slot (from_blob, not a view)
    size_t pending = 0;                 // members whose gradient is not final yet
    BucketState state = BucketState::kFilling;
    WorkHandle work;
  };
  struct Slot {
    size_t bucket = 0, member = 0;
    bool ready = false;
  };

  /// Bucket b's flat buffer when its parameters are on the CPU (else undefined).
  std::vector<torch::Tensor> allocate_cpu_buckets();
  void on_gradient_ready(size_t param);
  void begin_backward();
  void launch_in_order();
  void point_grad_at_bucket(size_t param);
  void reset_for_next_pass();
  int active_ranks(bool me_active);

  std::vector<torch::Tensor> params_;
  std::vector<std::string> names_;
  std::shared_ptr<Communicator> comm_;
  DDPOptions options_;
  std::vector<BucketLayout> layouts_;
  std::vector<Bucket> buckets_;
  std::vector<Slot> slots_;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;  // kept alive for the hooks
  std::mutex mutex_;
  Phase phase_ = Phase::kIdle;
  size_t next_to_launch_ = 0;
  bool sync_enabled_ = true;
  int64_t launched_total_ = 0;
  CommHook hook_;
  bool join_enabled_ = false;
  int divisor_ = 1;
  int64_t passes_ = 0;
};

}  // namespace paratorch
