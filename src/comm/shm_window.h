// src/comm/shm_window.h — one MPI shared-memory window over a group whose
// ranks all run on one node: every rank's segment, mapped in every process,
// plus a barrier on counters that live in the window.
//
// Shared by the two shared-memory all-reduce paths: ShmAllReduce (buffers are
// copied through a fixed-size window, shm_all_reduce.h) and symmetric buffers
// (the caller's buffer *is* this rank's segment, symmetric_buffer.h).
#pragma once
#include <mpi.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace paratorch::comm {

class ShmWindow {
 public:
  /// Collective over `comm`: every rank gets a segment of `bytes_per_rank`
  /// bytes (64-byte aligned). nullptr when the ranks are not all on one node,
  /// the group has one rank, or the window cannot be allocated.
  static std::unique_ptr<ShmWindow> create(MPI_Comm comm, int64_t bytes_per_rank);
  /// The same, but one segment of `bytes` in all: segment(q) is the same
  /// memory for every q, mapped in every process (a node-shared tensor).
  static std::unique_ptr<ShmWindow> create_one_copy(MPI_Comm comm, int64_t bytes);
  ~ShmWindow();
  ShmWindow(const ShmWindow&) = delete;
  ShmWindow& operator=(const ShmWindow&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  int64_t bytes_per_rank() const { return bytes_; }
  /// Rank q's segment, addressable by this process.
  char* segment(int q) const { return segments_[static_cast<size_t>(q)]; }

  /// Every rank's writes to the window before its barrier() are visible to
  /// every rank after it. Spins, then yields, then sleeps: ranks may
  /// outnumber cores. No deadline of its own: it runs inside a collective,
  /// which the communication thread's watchdog already times.
  void barrier();

 private:
  ShmWindow(MPI_Win window, int rank, int size, int64_t bytes, std::vector<char*> segments,
            std::atomic<uint64_t>* counters);
  static std::unique_ptr<ShmWindow> create_impl(MPI_Comm comm, int64_t bytes, bool one_copy);

  MPI_Win window_;
  int rank_, size_;
  int64_t bytes_;
  std::vector<char*> segments_;
  std::atomic<uint64_t>* counters_;  // one per rank, cache-line apart, before rank 0's segment
  uint64_t arrivals_ = 0;            // barriers this rank has entered
};

}  // namespace paratorch::comm
