// src/comm/communicator.cpp — backend-independent pieces of Communicator.
#include <paratorch/communicator.h>
#include <paratorch/errors.h>

#include "comm/op_info.h"

#include <atomic>

namespace paratorch {
namespace {
std::atomic<int64_t> sent_bytes{0};
}  // namespace

int64_t comm_bytes_sent() { return sent_bytes.load(std::memory_order_relaxed); }

namespace comm {
void count_sent_bytes(const std::string& op, int64_t bytes, int ranks) {
  if (ranks < 2 || bytes <= 0) return;
  const int64_t p = ranks;
  int64_t sent = 0;
  if (op == "all_reduce") sent = 2 * (p - 1) * bytes / p;
  else if (op == "reduce_scatter" || op == "all_to_all") sent = (p - 1) * bytes / p;  // bytes: the whole input
  else if (op == "all_gather") sent = (p - 1) * bytes;  // bytes: this rank's input
  else if (op == "broadcast" || op == "send") sent = bytes;
  sent_bytes.fetch_add(sent, std::memory_order_relaxed);
}
}  // namespace comm

const char* to_string(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kAvg: return "avg";
    case ReduceOp::kMax: return "max";
    case ReduceOp::kMin: return "min";
  }
  return "?";
}

void CommOptions::validate() const {
  if (!(timeout_s > 0))
    throw UsageError("paratorch: CommOptions::timeout_s must be > 0 seconds, got " +
                     std::to_string(timeout_s));
}

}  // namespace paratorch
