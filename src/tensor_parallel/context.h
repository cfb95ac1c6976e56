// src/tensor_parallel/context.h — what a tensor-parallel layer needs to know
// about the layout: the tp communicator (its rank and size) and whether
// sequence parallelism is on. Models receive one and never see the Layout.
//
// A default-constructed context means tp = 1: every layer is the plain,
// unsplit layer and no communication happens.
#pragma once
#include <paratorch/communicator.h>

#include <memory>

namespace paratorch::tensor_parallel {

struct TensorParallelContext {
  /// The tp group (ProcessGroups::tp()); null means tp = 1.
  std::shared_ptr<Communicator> comm;
  /// Megatron-3 sequence parallelism: LayerNorm/residual regions hold a
  /// slice of the sequence; all-gather/reduce-scatter replace all-reduces.
  bool sequence_parallel = false;

  int rank() const { return comm ? comm->rank() : 0; }
  int size() const { return comm ? comm->size() : 1; }
  bool active() const { return size() > 1; }
  bool sp() const { return sequence_parallel && active(); }
};

}  // namespace paratorch::tensor_parallel
