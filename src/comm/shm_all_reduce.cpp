// src/comm/shm_all_reduce.cpp — see shm_all_reduce.h.
#include "comm/shm_all_reduce.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <vector>

namespace paratorch::comm {
namespace {

constexpr int64_t kCacheLine = 64;
/// The whole window stays within this budget: chunk = budget / (2 buffers x P).
constexpr int64_t kWindowBudget = 64ll << 20;

}  // namespace

std::unique_ptr<ShmAllReduce> ShmAllReduce::create(MPI_Comm comm, int64_t max_chunk_bytes) {
  int size = 1;
  MPI_Comm_size(comm, &size);
  if (size < 2) return nullptr;
  const int64_t chunk = std::min(max_chunk_bytes, kWindowBudget / (2 * size)) / kCacheLine * kCacheLine;
  auto window = ShmWindow::create(comm, 2 * chunk);
  if (!window) return nullptr;
  return std::unique_ptr<ShmAllReduce>(new ShmAllReduce(comm, std::move(window), chunk));
}

bool ShmAllReduce::suits(const torch::Tensor& host) {
  const auto type = host.scalar_type();
  return host.device().is_cpu() && host.is_contiguous() && (type == torch::kFloat || type == torch::kDouble) &&
         host.numel() * static_cast<int64_t>(host.element_size()) >= kMinBytes;
}

template <typename T>
static void reduce_chunk(const std::vector<char*>& slots, int size, int rank, int64_t n, ReduceOp op) {
  const int64_t lo = n * rank / size, hi = n * (rank + 1) / size;
  std::vector<const T*> sources(static_cast<size_t>(size));
  for (int q = 0; q < size; ++q) sources[static_cast<size_t>(q)] = reinterpret_cast<const T*>(slots[q]) + lo;
  // The result goes to slot 0's slice: only this rank reads that slice now.
  reduce_slices(sources.data(), size, reinterpret_cast<T*>(slots[0]) + lo, hi - lo, op);
}

void ShmAllReduce::run(torch::Tensor& host, ReduceOp op) {
  const int64_t elem = host.element_size();
  const int64_t per_chunk = chunk_bytes_ / elem;
  char* data = static_cast<char*>(host.data_ptr());
  const int rank = window_->rank(), size = window_->size();
  std::vector<char*> slots(static_cast<size_t>(size));
  for (int64_t start = 0; start < host.numel(); start += per_chunk, ++chunks_) {
    const int64_t n = std::min(per_chunk, host.numel() - start);
    const int buffer = static_cast<int>(chunks_ % 2);
    for (int q = 0; q < size; ++q) slots[static_cast<size_t>(q)] = slot(buffer, q);
    std::memcpy(slots[static_cast<size_t>(rank)], data + start * elem, static_cast<size_t>(n * elem));
    window_->barrier();  // every rank's chunk is in its slot
    if (host.scalar_type() == torch::kFloat) reduce_chunk<float>(slots, size, rank, n, op);
    else reduce_chunk<double>(slots, size, rank, n, op);
    window_->barrier();  // every slice of slot 0 is reduced
    std::memcpy(data + start * elem, slots[0], static_cast<size_t>(n * elem));
  }
}

bool ShmAllReduce::beats_mpi(int64_t bytes) {
  // Best of five each. A near tie goes to MPI: the copying path also moves
  // the data through this rank's caches twice more, which the timing does
  // not charge.
  return choice_.candidate_wins(
      comm_, bytes, 5, [this](torch::Tensor& t) { run(t, ReduceOp::kSum); },
      [this](torch::Tensor& t) {
        MPI_Allreduce(MPI_IN_PLACE, t.data_ptr(), static_cast<int>(t.numel()), MPI_FLOAT, MPI_SUM, comm_);
      });
}

}  // namespace paratorch::comm
