// src/comm/communicator.cpp — backend-independent pieces of Communicator.
#include <paratorch/communicator.h>
#include <paratorch/errors.h>

namespace paratorch {

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
