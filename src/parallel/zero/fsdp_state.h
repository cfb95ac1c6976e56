// src/parallel/zero/fsdp_state.h — ZeRO stage 3's one driver: the units of
// a fully sharded model and how each runs (fsdp_unit.cpp). Two front ends
// build it: fully_shard (fully_shard.cpp) over a user's Sequential children,
// and ZeroEngine's stage 3 (zero_engine_stage3.cpp) over a bundled model's
// blocks, with the engine's fp32 master shards as the units' shards.
//
// Per unit, between uses, a rank holds only `shard`: its fp32 slice of the
// unit's padded flat buffer (parallel/zero/flat_buffer.h), which is the FsdpUnit's
// "flat_param" and what the optimizer steps. While the unit runs, `flat`
// holds the whole buffer in param_dtype (zero::GatheredFlat) and the
// unit's parameters are views of it; released, they are empty.
#pragma once
#include <paratorch/ddp.h>
#include <paratorch/zero.h>

#include "parallel/ddp/buffer_pool.h"
#include "parallel/zero/flat_buffer.h"
#include "parallel/zero/gathered_flat.h"

#include <functional>
#include <map>
#include <optional>

namespace paratorch {

struct FsdpState {
  struct Unit {
    std::string name;                                            // dotted path, or the model block's name
    std::function<torch::Tensor(const torch::Tensor&)> forward;  // the unit's computation (a module's forward)
    std::vector<torch::Tensor> params;                           // its parameters, layout order
    std::shared_ptr<zero::FlatLayout> layout;
    /// fp32 master shard ("flat_param"); the reduced gradient slice is added
    /// into shard.grad() (ZeroEngine points that at its own gradient shard).
    torch::Tensor shard;
    zero::GatheredFlat flat;                  // the whole unit in param_dtype while it runs
    int64_t gathered_version = -1;            // shard's version the gather was made from
    std::vector<size_t> shared_members;       // the tied parameters it uses: indices into units[*shared].params
  };

  std::shared_ptr<Communicator> group;
  FullyShardOptions options;
  std::vector<Unit> units;
  std::vector<std::weak_ptr<FsdpUnitImpl>> wrappers;
  std::vector<size_t> order;  // units in the order their forward first ran
  /// Tensors that several units use (tied weights: an embedding and the
  /// output head) form one more unit, units[*shared], with no forward. It
  /// is gathered when the first unit using it runs and stays gathered until
  /// the backward ends, as PyTorch FSDP keeps such parameters in the root
  /// unit; each unit's backward adds its part of their gradient into
  /// `shared_grad`, which is reduce-scattered once, at the end.
  std::optional<size_t> shared;
  torch::Tensor shared_grad;                   // fp32, padded flat, during a backward
  std::map<std::string, std::string> aliases;  // a tied parameter's other names -> its name in the shared unit
  zero::BufferPool pool;
  /// How a unit's gradients are reduce-scattered (the data-parallel engines'
  /// seam: reduce_in_dtype(mixed_precision.reduce_dtype) by default).
  CommHook hook;
  /// Reduce-scatters in flight: launched at the end of a unit's backward,
  /// finished before the next unit's gradients are taken or at the end of the backward.
  std::vector<zero::ShardReduction> pending;
  bool finish_queued = false;
  /// A leaf that requires grad, an input of every unit's autograd function,
  /// so that a unit's backward runs even when neither its input (token ids)
  /// nor anything else it is given requires grad.
  torch::Tensor anchor = torch::zeros({0}).requires_grad_(true);
  /// Called where a unit's transient memory has just been freed: after its
  /// forward, once the previous unit's reduce-scatter is done, after its
  /// backward. ZeroEngine hands the freed heap back to the OS there
  /// (ZeroEngineOptions::release_freed_memory); empty: nothing.
  std::function<void()> after_release;

  // fsdp_unit.cpp
  /// Unit u's forward on `input`: gathered, run, released (reshard_after_forward);
  /// its backward gathers again, recomputes and reduce-scatters.
  torch::Tensor run(size_t u, const torch::Tensor& input);
  void gather_async(size_t u);
  void ensure_gathered(size_t u);
  void release(size_t u);
  /// The unit `offset` places after u in forward order (negative: before), if known.
  void prefetch(size_t u, int offset);
  /// Backward through unit u's recomputed output `y` with `grad_output`:
  /// the gradients of its parameters and of the tied ones it uses, and of
  /// `x` where defined (returned), then its reduce-scatter started.
  torch::Tensor differentiate(size_t u, const torch::Tensor& y, const torch::Tensor& grad_output,
                              const torch::Tensor& x);
  /// Starts reducing the unit's full fp32 gradient (padded flat, from the
  /// pool) over the group through `hook`; finish_reductions() adds this
  /// rank's averaged slice into the unit's shard.grad(), as autograd would have.
  void reduce_scatter_async(size_t u, torch::Tensor full);
  /// Finishes the reductions in flight (`wait` = false: those already done).
  void finish_reductions(bool wait = true);
  /// Gathers the shared unit if unit u uses it (kept until the backward ends).
  void gather_shared_for(size_t u);
  /// When the backward ends: the units' reduce-scatters finished, the shared
  /// unit's gradient reduce-scattered, the shared unit released.
  void finish_backward();
  void trim() const {
    if (after_release) after_release();
  }
};

}  // namespace paratorch
