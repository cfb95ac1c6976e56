// src/comm/symmetric_buffer.cpp — see symmetric_buffer.h.
#include "comm/symmetric_buffer.h"

#include "comm/shm_all_reduce.h"

#include <cstring>
#include <vector>

namespace paratorch::comm {

std::unique_ptr<SymmetricBuffer> SymmetricBuffer::create(MPI_Comm comm, int64_t numel, torch::ScalarType dtype) {
  const int64_t elem = static_cast<int64_t>(c10::elementSize(dtype));
  auto window = ShmWindow::create(comm, numel * elem);
  if (!window) return nullptr;
  char* mine = window->segment(window->rank());
  std::memset(mine, 0, static_cast<size_t>(numel * elem));
  auto local = torch::from_blob(mine, {numel}, torch::TensorOptions().dtype(dtype));
  return std::unique_ptr<SymmetricBuffer>(new SymmetricBuffer(std::move(window), std::move(local)));
}

bool SymmetricBuffer::contains(const torch::Tensor& t) const {
  if (!t.defined() || !t.device().is_cpu() || !t.is_contiguous() || t.scalar_type() != local_.scalar_type())
    return false;
  const auto* begin = static_cast<const char*>(local_.data_ptr());
  const auto* end = begin + local_.numel() * static_cast<int64_t>(local_.element_size());
  const auto* first = static_cast<const char*>(t.data_ptr());
  return first >= begin && first + t.numel() * static_cast<int64_t>(t.element_size()) <= end;
}

/// Reduces this rank's part [n·r/P, n·(r+1)/P) of the slice at `offset_bytes`
/// across every copy, into every copy (to_all) or into this rank's only.
template <typename T>
static void reduce_part(const ShmWindow& window, int64_t offset_bytes, int64_t n, ReduceOp op, bool to_all) {
  const int rank = window.rank(), size = window.size();
  const int64_t lo = n * rank / size, hi = n * (rank + 1) / size;
  std::vector<T*> slices(static_cast<size_t>(size));
  for (int q = 0; q < size; ++q)
    slices[static_cast<size_t>(q)] = reinterpret_cast<T*>(window.segment(q) + offset_bytes) + lo;
  if (to_all) reduce_slices_to_all(slices.data(), size, hi - lo, op);
  else reduce_slices_to_one(slices.data(), size, rank, hi - lo, op);
}

void SymmetricBuffer::reduce_in_place(const torch::Tensor& slice, ReduceOp op, bool to_all) {
  const int64_t offset = static_cast<const char*>(slice.data_ptr()) - static_cast<const char*>(local_.data_ptr());
  window_->barrier();  // every rank's copy of the slice is final
  if (slice.scalar_type() == torch::kFloat) reduce_part<float>(*window_, offset, slice.numel(), op, to_all);
  else reduce_part<double>(*window_, offset, slice.numel(), op, to_all);
  window_->barrier();  // every part is written; nobody reads a peer's copy after this
}

void SymmetricBuffer::all_reduce(const torch::Tensor& slice, ReduceOp op) { reduce_in_place(slice, op, true); }

void SymmetricBuffer::reduce_scatter(const torch::Tensor& slice, ReduceOp op) {
  reduce_in_place(slice, op, false);
}

}  // namespace paratorch::comm
