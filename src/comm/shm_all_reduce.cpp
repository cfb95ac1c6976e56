// src/comm/shm_all_reduce.cpp — see shm_all_reduce.h.
#include "comm/shm_all_reduce.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <new>
#include <thread>

namespace paratorch::comm {
namespace {

constexpr int64_t kCacheLine = 64;
/// The whole window stays within this budget: chunk = budget / (2 buffers x P).
constexpr int64_t kWindowBudget = 64ll << 20;

/// Spin briefly (a barrier is usually met within microseconds), then yield,
/// then sleep: when ranks outnumber cores the peer we wait for needs our core.
void wait_until(const std::function<bool()>& ready) {
  for (int i = 0; i < 2000; ++i)
    if (ready()) return;
  for (int i = 0; i < 200; ++i) {
    if (ready()) return;
    std::this_thread::yield();
  }
  while (!ready()) std::this_thread::sleep_for(std::chrono::microseconds(20));
}

bool all_ranks_on_one_node(MPI_Comm comm, int size) {
  MPI_Comm node = MPI_COMM_NULL;
  if (MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) != MPI_SUCCESS) return false;
  int node_size = 0;
  MPI_Comm_size(node, &node_size);
  MPI_Comm_free(&node);
  int everywhere = node_size == size ? 1 : 0, all = 0;
  MPI_Allreduce(&everywhere, &all, 1, MPI_INT, MPI_MIN, comm);
  return all == 1;
}

}  // namespace

std::unique_ptr<ShmAllReduce> ShmAllReduce::create(MPI_Comm comm, int64_t max_chunk_bytes) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  if (size < 2 || !all_ranks_on_one_node(comm, size)) return nullptr;
  const int64_t chunk = std::min(max_chunk_bytes, kWindowBudget / (2 * size)) / kCacheLine * kCacheLine;
  // Rank 0's segment starts with the barrier counters.
  const int64_t header = kCacheLine * size;
  const MPI_Aint bytes = static_cast<MPI_Aint>(2 * chunk + (rank == 0 ? header : 0));
  char* base = nullptr;
  MPI_Win window = MPI_WIN_NULL;
  int ok = MPI_Win_allocate_shared(bytes, 1, MPI_INFO_NULL, comm, &base, &window) == MPI_SUCCESS;
  int all_ok = 0;
  MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, comm);
  if (!all_ok) {
    if (ok) MPI_Win_free(&window);
    return nullptr;
  }
  std::vector<char*> segments(static_cast<size_t>(size));
  for (int q = 0; q < size; ++q) {
    MPI_Aint seg_bytes = 0;
    int unit = 0;
    void* p = nullptr;
    MPI_Win_shared_query(window, q, &seg_bytes, &unit, &p);
    segments[static_cast<size_t>(q)] = static_cast<char*>(p);
  }
  auto* counters = reinterpret_cast<std::atomic<uint64_t>*>(segments[0]);
  if (rank == 0)
    for (int q = 0; q < size; ++q) new (segments[0] + q * kCacheLine) std::atomic<uint64_t>(0);
  segments[0] += header;
  MPI_Barrier(comm);  // counters exist before anyone uses them
  return std::unique_ptr<ShmAllReduce>(new ShmAllReduce(window, rank, size, chunk, segments, counters));
}

ShmAllReduce::ShmAllReduce(MPI_Win window, int rank, int size, int64_t chunk_bytes, std::vector<char*> slots,
                           std::atomic<uint64_t>* counters)
    : window_(window), rank_(rank), size_(size), chunk_bytes_(chunk_bytes), segments_(std::move(slots)),
      counters_(counters) {}

ShmAllReduce::~ShmAllReduce() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Win_free(&window_);
}

bool ShmAllReduce::suits(const torch::Tensor& host) {
  const auto type = host.scalar_type();
  return host.device().is_cpu() && host.is_contiguous() && (type == torch::kFloat || type == torch::kDouble) &&
         host.numel() * static_cast<int64_t>(host.element_size()) >= kMinBytes;
}

static std::atomic<uint64_t>& counter_at(std::atomic<uint64_t>* base, int q) {
  return *reinterpret_cast<std::atomic<uint64_t>*>(reinterpret_cast<char*>(base) + q * kCacheLine);
}

void ShmAllReduce::barrier() {
  // Each rank bumps its own counter (release: its writes to the window are
  // visible to whoever sees the new count) and waits until every rank has
  // reached the same count (acquire).
  const uint64_t target = ++arrivals_;
  counter_at(counters_, rank_).store(target, std::memory_order_release);
  wait_until([&] {
    for (int q = 0; q < size_; ++q)
      if (counter_at(counters_, q).load(std::memory_order_acquire) < target) return false;
    return true;
  });
}

char* ShmAllReduce::slot(int buffer, int rank) const {
  return segments_[static_cast<size_t>(rank)] + buffer * chunk_bytes_;
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
  std::vector<char*> slots(static_cast<size_t>(size_));
  for (int64_t start = 0; start < host.numel(); start += per_chunk, ++chunks_) {
    const int64_t n = std::min(per_chunk, host.numel() - start);
    const int buffer = static_cast<int>(chunks_ % 2);
    for (int q = 0; q < size_; ++q) slots[static_cast<size_t>(q)] = slot(buffer, q);
    std::memcpy(slots[static_cast<size_t>(rank_)], data + start * elem, static_cast<size_t>(n * elem));
    barrier();  // every rank's chunk is in its slot
    if (host.scalar_type() == torch::kFloat) reduce_chunk<float>(slots, size_, rank_, n, op);
    else reduce_chunk<double>(slots, size_, rank_, n, op);
    barrier();  // every slice of slot 0 is reduced
    std::memcpy(data + start * elem, slots[0], static_cast<size_t>(n * elem));
  }
}

}  // namespace paratorch::comm
