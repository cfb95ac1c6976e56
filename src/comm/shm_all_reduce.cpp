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

namespace {

/// dst[0, n) = reduce over the slots of their elements [offset, offset + n),
/// in slot (rank) order.
template <typename T>
void reduce_from(const std::vector<char*>& slots, int64_t offset, int64_t n, char* dst, ReduceOp op) {
  std::vector<const T*> sources;
  for (char* s : slots) sources.push_back(reinterpret_cast<const T*>(s) + offset);
  reduce_slices(sources.data(), static_cast<int>(slots.size()), reinterpret_cast<T*>(dst), n, op);
}

void reduce_from(torch::ScalarType type, const std::vector<char*>& slots, int64_t offset, int64_t n, char* dst,
                 ReduceOp op) {
  if (n <= 0) return;
  if (type == torch::kFloat)
    reduce_from<float>(slots, offset, n, dst, op);
  else
    reduce_from<double>(slots, offset, n, dst, op);
}

/// [lo, hi) of `slice` inside the chunk [start, start + n); empty as lo >= hi.
std::pair<int64_t, int64_t> within(const std::pair<int64_t, int64_t>& slice, int64_t start, int64_t n) {
  return {std::max(slice.first, start), std::min(slice.second, start + n)};
}

}  // namespace

// Chunks alternate between the window's two buffers (chunks_ keeps the
// parity across calls); `fn` gets each chunk's first element, its length
// and every rank's slot of its buffer.
void ShmAllReduce::each_chunk(const torch::Tensor& host, const ChunkFn& fn) {
  const int64_t per_chunk = chunk_bytes_ / host.element_size();
  std::vector<char*> slots(static_cast<size_t>(window_->size()));
  for (int64_t start = 0; start < host.numel(); start += per_chunk, ++chunks_) {
    const int buffer = static_cast<int>(chunks_ % 2);
    for (int q = 0; q < window_->size(); ++q) slots[static_cast<size_t>(q)] = slot(buffer, q);
    fn(start, std::min(per_chunk, host.numel() - start), slots);
  }
}

void ShmAllReduce::run(torch::Tensor& host, ReduceOp op) {
  const int64_t elem = host.element_size();
  char* data = static_cast<char*>(host.data_ptr());
  const int rank = window_->rank(), size = window_->size();
  each_chunk(host, [&](int64_t start, int64_t n, const std::vector<char*>& slots) {
    std::memcpy(slots[static_cast<size_t>(rank)], data + start * elem, static_cast<size_t>(n * elem));
    window_->barrier();  // every rank's chunk is in its slot
    // This rank's 1/P of the chunk, into slot 0's slice: only this rank reads that slice now.
    const int64_t lo = n * rank / size, hi = n * (rank + 1) / size;
    reduce_from(host.scalar_type(), slots, lo, hi - lo, slots[0] + lo * elem, op);
    window_->barrier();  // every slice of slot 0 is reduced
    std::memcpy(data + start * elem, slots[0], static_cast<size_t>(n * elem));
  });
}

// One barrier per chunk suffices here: a rank writes a buffer again two
// chunks later, after a barrier that every rank reaches only once it has
// finished reading that buffer.
void ShmAllReduce::reduce_scatter(torch::Tensor& host, ReduceOp op, const Slices& slices) {
  const int64_t elem = host.element_size();
  char* data = static_cast<char*>(host.data_ptr());
  const int rank = window_->rank();
  each_chunk(host, [&](int64_t start, int64_t n, const std::vector<char*>& slots) {
    std::memcpy(slots[static_cast<size_t>(rank)], data + start * elem, static_cast<size_t>(n * elem));
    window_->barrier();  // every rank's chunk is in its slot
    const auto [lo, hi] = within(slices[static_cast<size_t>(rank)], start, n);
    reduce_from(host.scalar_type(), slots, lo - start, hi - lo, data + lo * elem, op);
  });
}

void ShmAllReduce::all_gather(torch::Tensor& host, const Slices& slices) {
  const int64_t elem = host.element_size();
  char* data = static_cast<char*>(host.data_ptr());
  const int rank = window_->rank();
  each_chunk(host, [&](int64_t start, int64_t n, const std::vector<char*>& slots) {
    if (const auto [lo, hi] = within(slices[static_cast<size_t>(rank)], start, n); hi > lo)
      std::memcpy(slots[static_cast<size_t>(rank)] + (lo - start) * elem, data + lo * elem,
                  static_cast<size_t>((hi - lo) * elem));
    window_->barrier();  // every rank's slice of the chunk is in its slot
    for (size_t q = 0; q < slots.size(); ++q) {
      const auto [lo, hi] = within(slices[q], start, n);
      if (static_cast<int>(q) != rank && hi > lo)
        std::memcpy(data + lo * elem, slots[q] + (lo - start) * elem, static_cast<size_t>((hi - lo) * elem));
    }
  });
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
