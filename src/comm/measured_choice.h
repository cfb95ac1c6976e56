// src/comm/measured_choice.h — picking between two all-reduce paths by
// timing both, once per size class, the same way on every rank.
//
// Which path is faster belongs to the machine and its links, not to a
// constant: the shared-memory window beat MPI 1.7x at 16 MiB one week and
// lost 0.8x the next on the same VM (shm_all_reduce.h), and the hierarchical
// all-reduce wins or not by the link rate (hierarchical_all_reduce.h). So
// the first call for a power-of-two size class times both on scratch fp32
// buffers of that size, interleaved (a slow moment hits both) and best of
// `reps` each; the slowest rank's times decide, so every rank keeps the same
// verdict. A near tie (within 5%) goes to the baseline. Collective: call it
// from inside the op, where every rank passes the same size in order.
#pragma once
#include <mpi.h>
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <map>

namespace paratorch::comm {

class MeasuredChoice {
 public:
  /// Runs one path in place on `scratch` (fp32, the size class's bytes).
  using Path = std::function<void(torch::Tensor& scratch)>;

  /// Whether `candidate` beats `baseline` for buffers of about `bytes`.
  bool candidate_wins(MPI_Comm comm, int64_t bytes, int reps, const Path& candidate, const Path& baseline);

 private:
  std::map<int, bool> verdicts_;  // log2(bytes) -> verdict
};

}  // namespace paratorch::comm
