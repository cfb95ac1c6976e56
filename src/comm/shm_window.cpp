// src/comm/shm_window.cpp — see shm_window.h.
#include "comm/shm_window.h"

#include <chrono>
#include <functional>
#include <new>
#include <thread>

#include <sys/statvfs.h>

namespace paratorch::comm {
namespace {

constexpr int64_t kWindowLine = 64;

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

/// The window's backing file goes to /dev/shm (OpenMPI's default
/// osc_sm_backing_directory), a tmpfs that hands out pages lazily: in a
/// container with a small /dev/shm (Docker's default is 64 MB) a window that
/// does not fit turns into SIGBUS at first touch instead of an error. So
/// every rank checks there is room for the whole window twice over, and all
/// must agree; otherwise the caller keeps the MPI path.
bool backing_store_fits(MPI_Comm comm, int64_t window_bytes) {
  struct statvfs fs {};
  const bool fits = statvfs("/dev/shm", &fs) == 0 &&
                    static_cast<double>(fs.f_bavail) * static_cast<double>(fs.f_frsize) >= 2.0 * window_bytes;
  int mine = fits ? 1 : 0, all = 0;
  MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, comm);
  return all == 1;
}

std::atomic<uint64_t>& counter_at(std::atomic<uint64_t>* base, int q) {
  return *reinterpret_cast<std::atomic<uint64_t>*>(reinterpret_cast<char*>(base) + q * kWindowLine);
}

}  // namespace

std::unique_ptr<ShmWindow> ShmWindow::create(MPI_Comm comm, int64_t bytes_per_rank) {
  return create_impl(comm, bytes_per_rank, false);
}

std::unique_ptr<ShmWindow> ShmWindow::create_one_copy(MPI_Comm comm, int64_t bytes) {
  return create_impl(comm, bytes, true);
}

std::unique_ptr<ShmWindow> ShmWindow::create_impl(MPI_Comm comm, int64_t bytes_wanted, bool one_copy) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  if (size < 2 || !all_ranks_on_one_node(comm, size)) return nullptr;
  const int64_t bytes = (bytes_wanted + kWindowLine - 1) / kWindowLine * kWindowLine;
  if (!backing_store_fits(comm, one_copy ? bytes : bytes * size)) return nullptr;
  // Rank 0's segment starts with the barrier counters; with one copy it is
  // the only segment.
  const int64_t header = kWindowLine * size;
  const int64_t mine = one_copy && rank != 0 ? 0 : bytes;
  const MPI_Aint alloc = static_cast<MPI_Aint>(mine + (rank == 0 ? header : 0));
  char* base = nullptr;
  MPI_Win window = MPI_WIN_NULL;
  int ok = MPI_Win_allocate_shared(alloc, 1, MPI_INFO_NULL, comm, &base, &window) == MPI_SUCCESS;
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
    MPI_Win_shared_query(window, one_copy ? 0 : q, &seg_bytes, &unit, &p);
    segments[static_cast<size_t>(q)] = static_cast<char*>(p);
  }
  auto* counters = reinterpret_cast<std::atomic<uint64_t>*>(segments[0]);
  if (rank == 0)
    for (int q = 0; q < size; ++q) new (segments[0] + q * kWindowLine) std::atomic<uint64_t>(0);
  for (int q = 0; q < size; ++q)
    if (q == 0 || one_copy) segments[static_cast<size_t>(q)] += header;
  MPI_Barrier(comm);  // counters exist before anyone uses them
  return std::unique_ptr<ShmWindow>(new ShmWindow(window, rank, size, bytes, segments, counters));
}

ShmWindow::ShmWindow(MPI_Win window, int rank, int size, int64_t bytes, std::vector<char*> segments,
                     std::atomic<uint64_t>* counters)
    : window_(window), rank_(rank), size_(size), bytes_(bytes), segments_(std::move(segments)),
      counters_(counters) {}

ShmWindow::~ShmWindow() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Win_free(&window_);
}

void ShmWindow::barrier() {
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

}  // namespace paratorch::comm
