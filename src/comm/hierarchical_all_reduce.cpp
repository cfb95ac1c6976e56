// src/comm/hierarchical_all_reduce.cpp — see hierarchical_all_reduce.h.
#include "comm/hierarchical_all_reduce.h"

#include "comm/mpi_buffers.h"

#include <chrono>
#include <cstdlib>
#include <functional>
#include <vector>

namespace paratorch::comm {
namespace {

/// Which "host" this rank is on: MPI's shared-memory split, or blocks of
/// PARATORCH_NODE_SIZE consecutive ranks (tests).
MPI_Comm split_by_host(MPI_Comm comm, int rank) {
  MPI_Comm local = MPI_COMM_NULL;
  if (const char* k = std::getenv("PARATORCH_NODE_SIZE"); k && std::atoi(k) > 0) {
    check_mpi(MPI_Comm_split(comm, rank / std::atoi(k), rank, &local), "hierarchical all-reduce set-up");
  } else {
    check_mpi(MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &local),
              "hierarchical all-reduce set-up");
  }
  return local;
}

}  // namespace

std::unique_ptr<HierarchicalAllReduce> HierarchicalAllReduce::create(MPI_Comm comm) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  MPI_Comm local = split_by_host(comm, rank);
  int local_rank = 0, local_size = 1;
  MPI_Comm_rank(local, &local_rank);
  MPI_Comm_size(local, &local_size);
  // Hosts, and the largest host: every rank must take the same decision.
  int counts[2] = {local_rank == 0 ? 1 : 0, local_size};
  int totals[2] = {0, 0};
  MPI_Allreduce(counts, totals, 1, MPI_INT, MPI_SUM, comm);
  MPI_Allreduce(&counts[1], &totals[1], 1, MPI_INT, MPI_MAX, comm);
  MPI_Comm leaders = MPI_COMM_NULL;
  check_mpi(MPI_Comm_split(comm, local_rank == 0 ? 0 : MPI_UNDEFINED, rank, &leaders),
            "hierarchical all-reduce set-up");
  if (totals[0] < 2 || totals[1] < 2) {  // one host, or one rank per host
    MPI_Comm_free(&local);
    if (leaders != MPI_COMM_NULL) MPI_Comm_free(&leaders);
    return nullptr;
  }
  std::unique_ptr<HierarchicalAllReduce> h(new HierarchicalAllReduce());
  h->comm_ = comm;
  h->local_ = local;
  h->leaders_ = leaders;
  h->size_ = size;
  h->hosts_ = totals[0];
  return h;
}

HierarchicalAllReduce::~HierarchicalAllReduce() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  if (local_ != MPI_COMM_NULL) MPI_Comm_free(&local_);
  if (leaders_ != MPI_COMM_NULL) MPI_Comm_free(&leaders_);
}

void HierarchicalAllReduce::run(torch::Tensor& host, MPI_Datatype type, MPI_Op mpi_op, bool average) {
  const int count = static_cast<int>(host.numel());
  void* data = host.data_ptr();
  int local_rank = 0;
  MPI_Comm_rank(local_, &local_rank);
  // 1. This host's sum, on its leader (local rank 0).
  check_mpi(MPI_Reduce(local_rank == 0 ? MPI_IN_PLACE : data, local_rank == 0 ? data : nullptr, count, type, mpi_op,
                       0, local_),
            "all_reduce (inside a host)");
  // 2. The leaders' all-reduce: the only step that crosses hosts.
  if (leaders_ != MPI_COMM_NULL)
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, data, count, type, mpi_op, leaders_), "all_reduce (across hosts)");
  // 3. The result to every rank of the host.
  check_mpi(MPI_Bcast(data, count, type, 0, local_), "all_reduce (inside a host)");
  if (average) host.div_(size_);
}

bool HierarchicalAllReduce::beats_flat(int64_t bytes) {
  int size_class = 0;
  while ((int64_t{2} << size_class) <= bytes) ++size_class;
  if (auto it = beats_flat_.find(size_class); it != beats_flat_.end()) return it->second;
  // Plain buffers (this runs on the communication thread; see shm_all_reduce.cpp).
  const int64_t n = (int64_t{1} << size_class) / static_cast<int64_t>(sizeof(float));
  std::vector<float> a(static_cast<size_t>(n), 1.0f), b(static_cast<size_t>(n), 1.0f);
  torch::Tensor scratch = torch::from_blob(a.data(), {n}, torch::kFloat);
  double seconds[2] = {1e30, 1e30};
  auto time_into = [](double& best, const std::function<void()>& op) {
    const auto start = std::chrono::steady_clock::now();
    op();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  };
  for (int rep = 0; rep < 3; ++rep) {  // interleaved: a slow moment hits both
    time_into(seconds[0], [&] { run(scratch, MPI_FLOAT, MPI_SUM, false); });
    time_into(seconds[1], [&] { MPI_Allreduce(MPI_IN_PLACE, b.data(), static_cast<int>(n), MPI_FLOAT, MPI_SUM, comm_); });
  }
  MPI_Allreduce(MPI_IN_PLACE, seconds, 2, MPI_DOUBLE, MPI_MAX, comm_);  // the slowest rank's, so all agree
  return beats_flat_[size_class] = seconds[0] < 0.95 * seconds[1];
}

}  // namespace paratorch::comm
