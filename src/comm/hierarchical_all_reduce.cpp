// src/comm/hierarchical_all_reduce.cpp — see hierarchical_all_reduce.h.
#include "comm/hierarchical_all_reduce.h"

#include "comm/mpi_buffers.h"

#include <algorithm>
#include <chrono>
#include <limits>
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

/// The element that leaves any value unchanged under `op`, written with
/// plain loops (this runs on the communication thread, which must not start
/// torch's thread pool).
template <typename T>
void fill_with(torch::Tensor& host, int64_t begin, int64_t end, ReduceOp op) {
  T value = 0;  // kSum (kAvg runs as a sum)
  if (op == ReduceOp::kMax) value = -std::numeric_limits<T>::infinity();
  if (op == ReduceOp::kMin) value = std::numeric_limits<T>::infinity();
  T* p = host.data_ptr<T>();
  std::fill(p + begin, p + end, value);
}

/// Elements [begin, end) of `host` set to `op`'s neutral element.
void fill_neutral(torch::Tensor& host, ReduceOp op, int64_t begin, int64_t end) {
  if (end <= begin) return;
  if (host.scalar_type() == torch::kFloat) fill_with<float>(host, begin, end, op);
  else fill_with<double>(host, begin, end, op);
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
  if (totals[0] < 2 || totals[1] < 2) {  // one host, or one rank per host
    MPI_Comm_free(&local);
    return nullptr;
  }
  std::unique_ptr<HierarchicalAllReduce> h(new HierarchicalAllReduce());
  h->comm_ = comm;
  h->local_ = local;
  h->local_rank_ = local_rank;
  h->size_ = size;
  h->hosts_ = totals[0];
  h->local_shm_ = ShmAllReduce::create(local);
  // One rail: local rank 0 of each host carries the whole buffer across
  // hosts. A rail per local rank (slice r of R on local rank r, as NCCL runs
  // a ring per NIC) was measured slower on the 2-core VM, where more ranks
  // in TCP at once compete for the cores: 16 MiB over 4 hosts x 2 at
  // 1 Gbit/s, 1.35x flat with two rails against 1.40x with one.
  h->rails_ = 1;
  check_mpi(MPI_Comm_split(comm, local_rank < h->rails_ ? local_rank : MPI_UNDEFINED, rank, &h->rail_),
            "hierarchical all-reduce set-up");
  return h;
}

HierarchicalAllReduce::~HierarchicalAllReduce() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  local_shm_.reset();  // its window belongs to local_
  if (local_ != MPI_COMM_NULL) MPI_Comm_free(&local_);
  if (rail_ != MPI_COMM_NULL) MPI_Comm_free(&rail_);
}

void HierarchicalAllReduce::run(torch::Tensor& host, ReduceOp op) {
  const ReduceOp step = op == ReduceOp::kAvg ? ReduceOp::kSum : op;
  const MPI_Datatype type = mpi_type_of(host.scalar_type());
  const MPI_Op mpi_op = mpi_op_of(step, host.scalar_type());
  const int64_t count = host.numel(), elem = host.element_size();
  char* data = static_cast<char*>(host.data_ptr());
  if (local_shm_) {
    local_shm_->run(host, step);  // 1. every rank of the host holds the host's result
    // 2. the only step that crosses hosts: this rank's rail, its slice
    const int64_t begin = rail_ != MPI_COMM_NULL ? count * local_rank_ / rails_ : 0;
    const int64_t end = rail_ != MPI_COMM_NULL ? count * (local_rank_ + 1) / rails_ : 0;
    if (end > begin) rail_all_reduce(data + begin * elem, static_cast<int>(end - begin), type, mpi_op, elem);
    fill_neutral(host, step, 0, begin);
    fill_neutral(host, step, end, count);
    local_shm_->run(host, step);  // 3. every rail's slice, combined with neutral elements
  } else {
    check_mpi(MPI_Reduce(local_rank_ == 0 ? MPI_IN_PLACE : data, local_rank_ == 0 ? data : nullptr,
                         static_cast<int>(count), type, mpi_op, 0, local_),
              "all_reduce (inside a host)");
    if (local_rank_ == 0) rail_all_reduce(data, static_cast<int>(count), type, mpi_op, elem);  // rails_ == 1
    check_mpi(MPI_Bcast(data, static_cast<int>(count), type, 0, local_), "all_reduce (inside a host)");
  }
  if (op == ReduceOp::kAvg) divide_in_place(host, size_);
}

// As a ring (Patarasuk & Yuan, 2009): H-1 steps of reduce-scatter, then H-1
// of all-gather, each leader sending one 1/H chunk to its right neighbour
// while it receives one from its left. Each host's link carries 2(H-1)/H of
// the buffer, the least any all-reduce needs, and it is busy in every step.
// Measured on 4 namespace hosts x 2 ranks at 1 Gbit/s, 16 MiB, idle ranks
// yielding: the whole hierarchical all-reduce took 259-280 ms with this
// ring, 348-359 ms with MPI_Reduce_scatter plus MPI_Allgatherv (Open MPI's
// recursive halving, then doubling, which leave links idle in some rounds),
// and earlier 459 ms with MPI_Allreduce among the leaders (recursive
// doubling: the whole buffer every round; docs/cluster.md). Each chunk is
// reduced along one path and then copied, so every rank gets the same bits.
void HierarchicalAllReduce::rail_all_reduce(void* data, int count, MPI_Datatype type, MPI_Op op, int64_t elem) {
  int rank = 0, hosts = 1;
  MPI_Comm_rank(rail_, &rank);
  MPI_Comm_size(rail_, &hosts);
  if (hosts < 2) return;
  std::vector<int> counts(static_cast<size_t>(hosts)), displs(static_cast<size_t>(hosts));
  for (int q = 0; q < hosts; ++q) {
    counts[static_cast<size_t>(q)] = count / hosts + (q < count % hosts ? 1 : 0);
    displs[static_cast<size_t>(q)] = q == 0 ? 0 : displs[static_cast<size_t>(q - 1)] + counts[static_cast<size_t>(q - 1)];
  }
  char* bytes = static_cast<char*>(data);
  auto chunk = [&](int q) { return bytes + static_cast<int64_t>(displs[static_cast<size_t>(q)]) * elem; };
  auto size_of = [&](int q) { return counts[static_cast<size_t>(q)]; };
  auto wrap = [hosts](int q) { return (q % hosts + hosts) % hosts; };  // chunk index around the ring
  const int right = wrap(rank + 1), left = wrap(rank - 1);
  std::vector<char> incoming(static_cast<size_t>(size_of(0)) * static_cast<size_t>(elem));
  // Reduce-scatter: in step s, send chunk rank-s, fold chunk rank-s-1 in.
  for (int s = 0; s < hosts - 1; ++s) {
    const int out = wrap(rank - s), in = wrap(rank - s - 1);
    check_mpi(MPI_Sendrecv(chunk(out), size_of(out), type, right, s, incoming.data(), size_of(in), type, left, s, rail_,
                           MPI_STATUS_IGNORE),
              "all_reduce (across hosts)");
    check_mpi(MPI_Reduce_local(incoming.data(), chunk(in), size_of(in), type, op), "all_reduce (across hosts)");
  }
  // All-gather: this leader holds chunk rank+1 whole; pass the chunks on.
  for (int s = 0; s < hosts - 1; ++s) {
    const int out = wrap(rank + 1 - s), in = wrap(rank - s);
    check_mpi(MPI_Sendrecv(chunk(out), size_of(out), type, right, hosts + s, chunk(in), size_of(in), type, left,
                           hosts + s, rail_, MPI_STATUS_IGNORE),
              "all_reduce (across hosts)");
  }
}

bool HierarchicalAllReduce::beats_flat(int64_t bytes) {
  // Best of three each: a flat all-reduce over slow links takes long.
  return choice_.candidate_wins(
      comm_, bytes, 3, [this](torch::Tensor& t) { run(t, ReduceOp::kSum); },
      [this](torch::Tensor& t) {
        MPI_Allreduce(MPI_IN_PLACE, t.data_ptr(), static_cast<int>(t.numel()), MPI_FLOAT, MPI_SUM, comm_);
      });
}

}  // namespace paratorch::comm
