// src/comm/mpi_buffers.cpp — see mpi_buffers.h.
#include "comm/mpi_buffers.h"

#include <paratorch/errors.h>

#include <limits>
#include <string>

namespace paratorch::comm {

MPI_Datatype mpi_type_of(torch::ScalarType type) {
  switch (type) {
    case torch::kFloat: return MPI_FLOAT;
    case torch::kDouble: return MPI_DOUBLE;
    case torch::kInt: return MPI_INT32_T;
    case torch::kLong: return MPI_INT64_T;
    case torch::kShort: return MPI_INT16_T;
    case torch::kChar: return MPI_INT8_T;
    case torch::kByte: return MPI_UINT8_T;
    case torch::kBool: return MPI_C_BOOL;
    // 16-bit floats move as raw 16-bit words; reductions widen them first.
    case torch::kHalf:
    case torch::kBFloat16: return MPI_UINT16_T;
    default:
      throw UsageError(std::string("paratorch: communication does not support dtype ") +
                       c10::toString(type));
  }
}

namespace {

bool is_sum(ReduceOp op) { return op == ReduceOp::kSum || op == ReduceOp::kAvg; }

bool is_16bit_float(torch::ScalarType type) { return type == torch::kHalf || type == torch::kBFloat16; }

// MPI_User_function: inout[i] = round16(float(in[i]) + float(inout[i])).
template <typename T>
void sum_16bit(void* in, void* inout, int* len, MPI_Datatype* /*type*/) {
  const auto* a = static_cast<const uint16_t*>(in);
  auto* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *len; ++i) {
    const float sum = static_cast<float>(T(a[i], T::from_bits())) + static_cast<float>(T(b[i], T::from_bits()));
    b[i] = T(sum).x;
  }
}

MPI_Op make_op(MPI_User_function* fn) {
  MPI_Op op;
  MPI_Op_create(fn, /*commute=*/1, &op);
  return op;
}

}  // namespace

MPI_Op mpi_op_of(ReduceOp op, torch::ScalarType type) {
  if (is_sum(op) && type == torch::kBFloat16) {
    static const MPI_Op bf16_sum = make_op(&sum_16bit<c10::BFloat16>);
    return bf16_sum;
  }
  if (is_sum(op) && type == torch::kHalf) {
    static const MPI_Op fp16_sum = make_op(&sum_16bit<c10::Half>);
    return fp16_sum;
  }
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg: return MPI_SUM;  // kAvg divides afterwards
    case ReduceOp::kMax: return MPI_MAX;
    case ReduceOp::kMin: return MPI_MIN;
  }
  return MPI_SUM;
}

int StagedBuffer::count() const {
  int64_t n = host.numel();
  if (n > std::numeric_limits<int>::max())
    throw UsageError("paratorch: a single message of " + std::to_string(n) +
                     " elements exceeds MPI's int count; split the tensor (e.g. smaller bucket_mb)");
  return static_cast<int>(n);
}

MPI_Datatype StagedBuffer::mpi_type() const { return mpi_type_of(host.scalar_type()); }

void StagedBuffer::copy_back() {
  if (!needs_copy_back) return;
  torch::NoGradGuard no_grad;
  original.copy_(host);
}

StagedBuffer stage(const torch::Tensor& tensor, bool for_reduction, bool written, ReduceOp op) {
  StagedBuffer b;
  b.original = tensor;
  b.host = tensor;
  torch::NoGradGuard no_grad;
  bool copied = false;
  if (b.host.is_cuda()) {
    // Pinned memory makes the device<->host copies direct DMA transfers.
    auto pinned = torch::empty(b.host.sizes(), b.host.options().device(torch::kCPU).pinned_memory(true));
    pinned.copy_(b.host);
    b.host = pinned;
    copied = true;
  }
  auto type = b.host.scalar_type();
  if (for_reduction && is_16bit_float(type) && !is_sum(op)) {
    b.host = b.host.to(torch::kFloat);
    copied = true;
  }
  if (!b.host.is_contiguous()) {
    b.host = b.host.contiguous();
    copied = true;
  }
  b.needs_copy_back = copied && written;
  return b;
}

void divide_in_place(torch::Tensor& tensor, int divisor) {
  if (divisor == 1) return;
  if (tensor.scalar_type() == torch::kFloat && tensor.is_contiguous()) {
    float* p = tensor.data_ptr<float>();
    const float d = static_cast<float>(divisor);
    for (int64_t i = 0, n = tensor.numel(); i < n; ++i) p[i] /= d;
  } else if (tensor.scalar_type() == torch::kDouble && tensor.is_contiguous()) {
    double* p = tensor.data_ptr<double>();
    const double d = static_cast<double>(divisor);
    for (int64_t i = 0, n = tensor.numel(); i < n; ++i) p[i] /= d;
  } else if (tensor.is_floating_point()) {
    torch::NoGradGuard no_grad;
    tensor.div_(divisor);
  } else {
    torch::NoGradGuard no_grad;
    tensor.div_(divisor, "floor");
  }
}

void check_mpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw RuntimeFailure(std::string("paratorch: ") + what + " failed: " + std::string(msg, len));
}

}  // namespace paratorch::comm
