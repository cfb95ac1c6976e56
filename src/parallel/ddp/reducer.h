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
// Main gradients (DDPOptions::main_grad_dtype, Megatron-LM's main_grad): the
// buckets are in that dtype (fp32 for a bf16 model) and nothing aliases
// them; each final gradient is added into its slot and dropped from .grad,
// so accumulation and reduction run at the buckets' precision. The first
// gradient after a reduced pass zeroes them.
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
//
// Reduce-scatter mode (ZeRO stage 2, Rajbhandari et al., 2019, §5.2): the
// same hooks and in-order launches, but each bucket is a padded flat buffer
// (parallel/zero/flat_buffer.h's arithmetic: length a multiple of the group size, rank
// r's shard is the r-th equal slice) taken from a pool for one backward pass.
// A final gradient is moved into its bucket and dropped from .grad; a full
// bucket is reduce-scattered by the same comm hook (GradBucket::shard set),
// and when backward ends each bucket's averaged shard is handed to
// ReduceScatterOptions::on_shard and the full buckets go back to the pool:
// between passes a rank holds only gradient shards.
// With the caller's own full buckets (ReduceScatterOptions::buffers: ZeRO
// stage 1, or stage 0 with ::all_reduce) the buckets persist, gradients
// accumulate in them over micro-batches (no_sync) and each is reduced in
// place: one gradient path for ZeRO stages 0-2.
#pragma once
#include <paratorch/communicator.h>
#include <paratorch/ddp.h>

#include "parallel/ddp/buffer_pool.h"
#include "parallel/ddp/reduce_slots.h"

#include <torch/torch.h>

#include <functional>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace paratorch {

/// All-reduce (DDP: every rank ends with the averaged gradients in .grad) or
/// reduce-scatter (ZeRO stage 2: every rank ends with its averaged shard).
enum class ReduceMode { kAllReduce, kReduceScatter };

/// What the reduce-scatter mode needs beyond DDPOptions.
struct ReduceScatterOptions {
  /// The buckets, in launch order: the caller's flat buffers, so that the
  /// shards line up with its own layout (members that need no gradient
  /// keep their place and count as zeros). Each is padded to a multiple of the
  /// group's size; rank r's shard is [r·S, (r+1)·S), S = padded / size.
  std::vector<BucketLayout> buckets;
  /// dtype the full buckets collect the gradients in (gradients of another
  /// dtype are converted on the way in); the shard has it too.
  torch::ScalarType buffer_dtype = torch::kFloat;
  /// Gets each bucket's averaged shard when backward ends (or finalize()),
  /// on the thread that ends it; the tensor goes back to a pool afterwards.
  std::function<void(size_t bucket, const torch::Tensor& shard)> on_shard;
  /// The caller's full buckets, one per entry of `buckets` (padded length,
  /// buffer_dtype), instead of pooled ones: ZeRO stages 0-1 keep the whole
  /// gradient. Gradients accumulate in them over passes, no_sync() passes
  /// included (members of buffer_dtype alias them through .grad, others are
  /// added in); the caller zeroes them. Each is reduced in place: the shard
  /// is its own slice, on_shard is optional.
  std::vector<torch::Tensor> buffers;
  /// With `buffers`: all-reduce each bucket whole instead of scattering it,
  /// so every rank gets the whole average (ZeRO stage 0; pad to 1 rank).
  bool all_reduce = false;
  /// Without `buffers` (CPU parameters): reduce each pooled bucket in one of
  /// this many slots of a reduce buffer from the communicator
  /// (reduce_slots.h: on one node, shared memory reduced in place); a
  /// bucket then waits for the one `reduce_slots` before it to be handed
  /// over. 0: reduce the pooled buffers themselves.
  int reduce_slots = 0;
};

/// The comm hook that reduces in `dtype` ([train] reduce_precision, FSDP's
/// reduce_dtype): kFloat the default all-reduce; bf16 | fp16 DDP's
/// compression hooks, which round each rank's (pre-divided) gradient to 16
/// bits and the result after the sum. The 16-bit words go on the wire as
/// they are (half fp32's bytes); MPI has no 16-bit float sum, so the
/// communicator registers one that adds pairs at fp32 and rounds
/// (comm/mpi_buffers.cpp). A group of one rank reduces nothing, so it rounds nothing.
CommHook reduce_in_dtype(torch::ScalarType dtype, const Communicator& group);

/// Elements of a bucket of `numel` padded to a multiple of `ranks`.
int64_t padded_bucket_numel(int64_t numel, int ranks);

class Reducer : public std::enable_shared_from_this<Reducer> {
 public:
  /// All-reduce mode: buckets from plan_buckets(bucket_mb), .grad aliases them.
  Reducer(std::vector<torch::Tensor> params, std::vector<std::string> names,
          std::shared_ptr<Communicator> comm, DDPOptions options);
  /// Reduce-scatter mode (see the header comment). Gradients are reduced
  /// every synchronized pass; unused parameters count as zero gradients.
  Reducer(std::vector<torch::Tensor> params, std::vector<std::string> names,
          std::shared_ptr<Communicator> comm, ReduceScatterOptions options);
  ~Reducer();
  /// Installs the gradient-accumulator hooks (needs shared_from_this).
  void install_hooks();

  void set_sync(bool enabled);
  bool sync_enabled() const { return sync_enabled_; }
  /// Ends the current backward pass: launch what is left, wait, average.
  void finalize();
  /// Reduces what set_sync(false) passes accumulated, as a synchronized pass
  /// that reached no parameter would (every bucket launched at once, no
  /// overlap): for a step taken with no synchronized backward after them.
  /// Nothing when none are held, or during a backward pass.
  void reduce_accumulated();
  /// false: a pass ends only at finalize(), not when the autograd engine's
  /// backward ends — for a backward run as several engine calls (the
  /// pipeline's split weight passes, parallel/pipeline/split_backward.h).
  void set_finalize_at_end_of_backward(bool on) { finalize_at_end_ = on; }
  const std::vector<BucketLayout>& layouts() const { return layouts_; }
  int64_t reductions_launched() const { return launched_total_; }
  void set_comm_hook(CommHook hook);
  /// Turns the join protocol on (every rank at the same point).
  void enable_join();
  /// Shadows the others' passes until every rank is done; turns join off.
  /// Returns the bucket reductions shadowed.
  int64_t join_until_all_done();
  /// DDPOptions::main_grad_dtype: each parameter's main gradient, in the
  /// order of `params` (undefined for one that needs no gradient).
  std::vector<torch::Tensor> main_grads() const;
  /// Main gradients: the next gradient starts a new sum (zeroes them), as
  /// after a reduced pass.
  void restart_accumulation();
  /// Synchronized backward passes this rank took part in (for Join).
  int64_t passes() const { return passes_; }
  ReduceMode mode() const { return mode_; }

 private:
  enum class Phase { kIdle, kBackward };
  enum class BucketState { kFilling, kLaunched, kReduced };
  struct Bucket {
    torch::Tensor flat;                 // every member's gradient, back to back (reduce-scatter: padded, pooled)
    torch::Tensor shard;                // reduce-scatter: this rank's averaged slice (pooled)
    std::vector<torch::Tensor> views;   // views[k] aliases member k's slot (from_blob, not a view)
    size_t pending = 0;                 // members whose gradient is not final yet
    size_t expected = 0;                // members that get a gradient each pass
    BucketState state = BucketState::kFilling;
    WorkHandle work;
    bool in_slot = false;  // flat and shard live in a ReduceSlots slot, not the pool
  };
  struct Slot {
    size_t bucket = 0, member = 0;
    int64_t offset = 0;  // reduce-scatter: where the gradient starts in its bucket
    bool ready = false;
    bool aliased = false;  // .grad is a view of the bucket (else moved into it when final)
  };

  /// Bucket b's flat buffer when its parameters are on the CPU (else undefined).
  std::vector<torch::Tensor> allocate_cpu_buckets();
  /// What the comm hook gets of bucket b (gradients and names in all-reduce mode).
  GradBucket bucket_view(size_t b) const;
  void on_gradient_ready(size_t param);
  void begin_backward();
  void launch_in_order();
  void point_grad_at_bucket(size_t param);
  void move_grad_into_bucket(size_t param);
  torch::Tensor& scatter_buffer(size_t bucket);
  void adopt_caller_buffers();
  void take_gradient(size_t param);
  void start_accumulation();
  /// Reduce-scatter mode: hands over, in launch order, the shards of the
  /// buckets that are reduced, waiting for those below `wait_below`.
  void retire_reduced(size_t wait_below);
  void reset_for_next_pass();
  int active_ranks(bool me_active);

  std::vector<torch::Tensor> params_;
  std::vector<std::string> names_;
  std::shared_ptr<Communicator> comm_;
  DDPOptions options_;
  ReduceMode mode_ = ReduceMode::kAllReduce;
  bool main_grads_ = false;            // DDPOptions::main_grad_dtype: buckets in that dtype, .grad added in
  bool accumulation_started_ = false;  // main gradients: zeroed since the last reduced pass
  bool caller_buckets_ = false;  // built from ReduceScatterOptions (ZeRO's own bucket layout)
  ReduceScatterOptions scatter_;
  zero::BufferPool pool_;  // reduce-scatter: full buckets and shards of the pass in flight
  ReduceSlots slots_in_comm_;  // reduce-scatter: where pooled buckets are reduced (reduce_slots.h)
  std::vector<BucketLayout> layouts_;
  std::vector<Bucket> buckets_;
  std::vector<Slot> slots_;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;  // kept alive for the hooks
  std::mutex mutex_;
  Phase phase_ = Phase::kIdle;
  size_t next_to_launch_ = 0;
  size_t next_to_retire_ = 0;  // reduce-scatter: first bucket whose shard is not handed over yet
  bool sync_enabled_ = true;
  bool unreduced_ = false;  // set_sync(false) passes added gradients not reduced since
  bool finalize_at_end_ = true;
  int64_t launched_total_ = 0;
  CommHook hook_;
  bool join_enabled_ = false;
  int divisor_ = 1;
  int64_t passes_ = 0;
};

}  // namespace paratorch
