// src/comm/op_info.h — what an operation in flight is, for messages.
//
// Every deadline report and debug mismatch names the rank, the group, the
// operation and its sizes; OpInfo carries exactly that.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

namespace paratorch::comm {

struct OpInfo {
  std::string op;            // "all_reduce", "recv", ...
  std::string group;         // communicator name
  int world_rank = 0;
  int group_rank = 0;
  int group_size = 1;
  std::vector<int> group_world_ranks;
  std::string dtype;         // "float32"
  std::vector<int64_t> shape;
  int64_t bytes = 0;
  int peer = -1;             // root / src / dst in group ranks, -1 if none
  uint64_t sequence = 0;     // n-th collective on this communicator
  uint64_t group_key = 0;    // group_key_of(group, group_world_ranks): same on every member

  /// Point-to-point ops are numbered apart from the group's collectives.
  bool is_p2p() const { return op == "send" || op == "recv"; }

  /// "all_reduce on group 'dp' [world ranks 0,1] (group rank 1 of 2), float32[1024] (4096 bytes)"
  std::string describe() const;
};

/// "float32", "bfloat16", ... (PyTorch's Python names).
std::string dtype_name(torch::ScalarType type);

/// Names one group the same way on all of its members (the name alone is
/// not unique: every dp replica group may be called 'dp').
uint64_t group_key_of(const std::string& group, const std::vector<int>& world_ranks);

OpInfo make_op_info(const std::string& op, const torch::Tensor& tensor);

/// Adds an operation to comm_bytes_sent() (communicator.h says how each op
/// counts). `bytes`: the tensor OpInfo describes (all_gather: the input;
/// reduce_scatter and all_to_all: the input; others: the buffer).
void count_sent_bytes(const std::string& op, int64_t bytes, int ranks);

}  // namespace paratorch::comm
