// src/parallel/zero/flat_shards.h — ZeRO stages 1-2's model state over a
// data-parallel group: the one implementation under both the public
// ZeroRedundancyOptimizer (paratorch/zero.h) and the trainer's ZeroEngine.
//
// ZeRO stage 1 (Rajbhandari et al., 2019, §5.1): the parameters live in flat
// buffers (DDP-sized buckets in reverse registration order, the order
// backward produces gradients), each rank owns 1/N of every buffer
// (flat_buffer.h's arithmetic) and keeps the fp32 master and the averaged
// gradient of that shard only. Stage 2 (§5.2) keeps no whole gradient
// either. The gradients reach the shards through DDP's gradient reducer
// during backward (parallel/ddp/reducer.h):
//   stage 1  each buffer's whole fp32 gradient is kept (the parameters'
//            fp32 .grad alias it, so micro-batches accumulate in place) and
//            reduced in place by a synchronized backward: all-reduced whole
//            (`whole_gradients`, every .grad then holds the dp average, as
//            after DDP) or reduce-scattered, only this rank's shard averaged;
//   stage 2  reduce-scatter mode with pooled buffers: each buffer's
//            averaged shard is added into the gradient shard as backward ends.
// Whoever steps the masters (the user's torch::optim optimizer over
// masters(), or the trainer's optimizer over their per-parameter pieces)
// calls before_update() first and publish() after: every rank's
// parameters then hold the new values, all-gathered in param_dtype or, with
// one parameter copy per node, written in place and published by a barrier.
#pragma once
#include "parallel/ddp/reducer.h"
#include "parallel/zero/flat_buffer.h"

#include <memory>
#include <string>
#include <vector>

namespace paratorch::zero {

struct FlatShardsOptions {
  int stage = 1;            // 1 | 2
  double bucket_mb = 25.0;  // one flat buffer's size, counted in fp32 gradient bytes
  /// The parameters' dtype in the flat buffers (the compute precision);
  /// masters and gradient shards are fp32.
  torch::ScalarType param_dtype = torch::kFloat;
  /// The dp reduction's dtype (reduce_in_dtype: 16-bit words on the wire).
  torch::ScalarType reduce_dtype = torch::kFloat;
  /// Stage 1: false when the gradients arrive already averaged (the module
  /// is wrapped in DDP, or a pipeline stage reduced them): no reducer and
  /// no whole gradient kept; finalize() copies this rank's pieces of each .grad in.
  bool reduce_gradients = true;
  /// Stage 1: all-reduce each buffer whole, so every .grad holds the dp
  /// average (the public optimizer, whose users may read .grad); false
  /// averages only this rank's shard in place (the trainer reads shards only).
  bool whole_gradients = true;
  /// CPU parameters, ranks > 1: one parameter copy that every rank of the
  /// node maps (Communicator::allocate_shared_buffer) where the backend has
  /// it, so publish() is a barrier and the node holds the parameters once.
  bool one_copy_per_node = false;
};

class FlatShards {
 public:
  struct Buffer {
    std::vector<size_t> members;  // indices into the parameters, buffer order
    std::shared_ptr<FlatLayout> layout;
    torch::Tensor flat;       // the whole buffer in param_dtype; the parameters are views of it
    torch::Tensor master;     // this rank's fp32 shard (fp32: a view of flat); its .grad is `grad`
    torch::Tensor grad;       // this rank's averaged fp32 gradient shard (stage 1: a view of full_grad)
    torch::Tensor full_grad;  // stage 1 with a reducer: the whole fp32 gradient, padded (its bucket)
  };

  /// `params` (trainable, in an order every dp rank shares) become views of
  /// the buffers; every rank must pass the same values. Collective over `group`.
  FlatShards(std::vector<torch::Tensor> params, std::vector<std::string> names, std::shared_ptr<Communicator> group,
             FlatShardsOptions options);
  /// Leaves each parameter memory of its own and drops the gradients that
  /// are views of the buffers: those may be the communicator's memory,
  /// which can go before the parameters do.
  ~FlatShards();
  FlatShards(const FlatShards&) = delete;
  FlatShards& operator=(const FlatShards&) = delete;

  const std::vector<Buffer>& buffers() const { return buffers_; }
  std::vector<torch::Tensor> masters() const;
  const FlatShardsOptions& options() const { return options_; }
  /// Stage 1: gradients accumulate in the kept whole buffers over
  /// unsynchronized passes; stage 2 has none, so each pass reduces (or pools).
  bool keeps_whole_gradients() const { return options_.stage == 1 && options_.reduce_gradients; }
  bool shares_parameters() const { return shared_; }

  /// Zeroes the gradient buffers and drops any .grad that is not a view of them.
  void zero_grad();
  /// false: the following backward passes accumulate without reducing.
  void set_sync(bool sync);
  /// Makes the gradient shards hold the average of what backward produced:
  /// what set_sync(false) passes left unreduced is reduced now; without a
  /// reducer, the parameters' .grad are copied in. Cheap when backward
  /// already finished it.
  void finalize();
  /// Before the masters change: with one copy per node no rank may write
  /// its shard while a peer still reads the parameters (its backward).
  void before_update();
  /// After the masters changed: every rank's parameters from them.
  void publish();
  int64_t reductions_launched() const;
  /// Bytes of the gradients this rank holds between steps.
  int64_t gradient_bytes() const;

 private:
  struct Arenas {
    torch::Tensor params, grads;  // every buffer's flat parameters and whole gradient: slices of these
    int64_t used = 0;
  };
  Arenas allocate_arenas(const std::vector<BucketLayout>& plan);
  void build_buffer(const std::vector<size_t>& members, Arenas& arenas);
  void install_reducer();
  void copy_gradients_in();
  bool in_full_grad(const Buffer& b, size_t k) const;

  std::vector<torch::Tensor> params_;
  std::vector<std::string> names_;
  std::shared_ptr<Communicator> group_;
  FlatShardsOptions options_;
  bool shared_ = false;  // the parameters are one node-shared copy
  std::vector<Buffer> buffers_;
  // declared last, so it goes first: its hand-over writes the buffers' gradients
  std::shared_ptr<Reducer> reducer_;
};

}  // namespace paratorch::zero
