// src/parallel/zero/fsdp_state.h — what fully_shard keeps per unit (internal
// to src/parallel/zero/fsdp_*.cpp and fully_shard.cpp).
//
// Per unit, between uses, a rank holds only `shard`: its fp32 slice of the
// unit's padded flat buffer (parallel/zero/flat_buffer.h), which is the FsdpUnit's
// "flat_param" and what the optimizer steps. While the unit runs, `flat`
// holds the whole buffer in param_dtype (zero::GatheredFlat) and the
// wrapped module's parameters are views of it; released, they are empty.
#pragma once
#include <paratorch/ddp.h>
#include <paratorch/zero.h>

#include "parallel/ddp/buffer_pool.h"
#include "parallel/zero/flat_buffer.h"
#include "parallel/zero/gathered_flat.h"

#include <map>
#include <optional>

namespace paratorch {

struct FsdpState {
  struct Unit {
    std::string name;                         // dotted path from the root module
    torch::nn::AnyModule module;              // the wrapped module (its forward)
    std::vector<torch::Tensor> params;        // its parameters, layout order
    std::unique_ptr<zero::FlatLayout> layout;
    torch::Tensor shard;                      // fp32 master shard ("flat_param")
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
  /// output head) form one more unit, units[*shared], with no module and no
  /// wrapper. It is gathered when the first unit using it runs and stays
  /// gathered until the backward ends, as PyTorch FSDP keeps such parameters
  /// in the root unit; each unit's backward adds its part of their gradient
  /// into `shared_grad`, which is reduce-scattered once, at the end.
  std::optional<size_t> shared;
  torch::Tensor shared_grad;                   // fp32, padded flat, during a backward
  std::map<std::string, std::string> aliases;  // a tied parameter's other names -> its name in the shared unit
  zero::BufferPool pool;
  /// How a unit's gradients are reduce-scattered (the data-parallel engines'
  /// seam: reduce_in_dtype(mixed_precision.reduce_dtype) by default).
  CommHook hook;
  /// Reduce-scatters in flight: launched at the end of a unit's backward,
  /// finished before the next unit's starts or at the end of the backward.
  std::vector<zero::ShardReduction> pending;
  bool finish_queued = false;

  // fsdp_unit.cpp
  void gather_async(size_t u);
  void ensure_gathered(size_t u);
  void release(size_t u);
  /// The unit `offset` places after u in forward order (negative: before), if known.
  void prefetch(size_t u, int offset);
  /// Starts reducing the unit's full gradients (null where none) over the
  /// group through `hook`; finish_reductions() adds this rank's averaged
  /// fp32 slice into the unit's shard.grad(), as autograd would have.
  void reduce_scatter_async(size_t u, const std::vector<torch::Tensor>& grads);
  void finish_reductions();
  /// Gathers the shared unit if unit u uses it (kept until the backward ends).
  void gather_shared_for(size_t u);
  /// Adds unit u's gradients of the tied tensors it uses (its shared_members
  /// order; undefined = none) into shared_grad.
  void add_shared_gradients(size_t u, const std::vector<torch::Tensor>& grads);
  /// When the backward ends: the units' reduce-scatters finished, the shared
  /// unit's gradient reduce-scattered, the shared unit released.
  void finish_backward();
};

}  // namespace paratorch
