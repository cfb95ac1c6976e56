// src/comm/hierarchical_all_reduce.cpp — see hierarchical_all_reduce.h.
#include "comm/hierarchical_all_reduce.h"

#include "comm/mpi_buffers.h"

#include <algorithm>
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

/// Which chunk a leader sends and receives in each step of the ring, and
/// where each chunk and segment lies. Step t < H-1 is reduce-scatter, the
/// rest all-gather; what arrives in step t leaves in step t+1.
class RingPlan {
 public:
  RingPlan(int64_t count, int hosts, int rank, int64_t elem, int64_t segment_bytes) : hosts_(hosts), rank_(rank) {
    for (int q = 0; q < hosts; ++q) {
      counts_.push_back(count / hosts + (q < count % hosts ? 1 : 0));
      offsets_.push_back(q == 0 ? 0 : offsets_.back() + counts_[static_cast<size_t>(q - 1)]);
    }
    const int64_t per = std::max<int64_t>(1, segment_bytes / elem);
    segments_ = static_cast<int>(std::max<int64_t>(1, (counts_[0] + per - 1) / per));
  }
  int left() const { return wrap(rank_ - 1); }
  int right() const { return wrap(rank_ + 1); }
  /// Reduce-scatter step t sends chunk rank-t and folds in chunk rank-t-1;
  /// all-gather step t' = t-(H-1) passes chunk rank+1-t' on and takes rank-t'.
  int outgoing(int t) const { return t < hosts_ - 1 ? wrap(rank_ - t) : wrap(rank_ + 1 - (t - hosts_ + 1)); }
  int incoming(int t) const { return t < hosts_ - 1 ? wrap(rank_ - t - 1) : wrap(rank_ - (t - hosts_ + 1)); }
  int segments() const { return segments_; }
  int64_t max_chunk() const { return counts_[0]; }
  int64_t offset(int q) const { return offsets_[static_cast<size_t>(q)]; }
  /// Segment j of chunk q: {first element, elements} (possibly empty).
  std::pair<int64_t, int64_t> segment(int q, int j) const {
    const int64_t n = counts_[static_cast<size_t>(q)];
    const int64_t begin = n * j / segments_, end = n * (j + 1) / segments_;
    return {offsets_[static_cast<size_t>(q)] + begin, end - begin};
  }

 private:
  int wrap(int q) const { return (q % hosts_ + hosts_) % hosts_; }
  int hosts_, rank_, segments_ = 1;
  std::vector<int64_t> counts_, offsets_;
};
}  // namespace

std::unique_ptr<HierarchicalAllReduce> HierarchicalAllReduce::create(MPI_Comm comm, HierarchicalTuning tuning) {
  int rank = 0, size = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &size);
  MPI_Comm local = split_by_host(comm, rank);
  int local_rank = 0, local_size = 1;
  MPI_Comm_rank(local, &local_rank);
  MPI_Comm_size(local, &local_size);
  // Hosts, the largest and the smallest host: every rank must take the same decision.
  int hosts = local_rank == 0 ? 1 : 0, largest = local_size, smallest = local_size;
  MPI_Allreduce(MPI_IN_PLACE, &hosts, 1, MPI_INT, MPI_SUM, comm);
  MPI_Allreduce(MPI_IN_PLACE, &largest, 1, MPI_INT, MPI_MAX, comm);
  MPI_Allreduce(MPI_IN_PLACE, &smallest, 1, MPI_INT, MPI_MIN, comm);
  if (hosts < 2 || largest < 2) {  // one host, or one rank per host
    MPI_Comm_free(&local);
    return nullptr;
  }
  std::unique_ptr<HierarchicalAllReduce> h(new HierarchicalAllReduce());
  h->comm_ = comm;
  h->local_ = local;
  h->local_rank_ = local_rank;
  h->size_ = size;
  h->hosts_ = hosts;
  h->tuning_ = tuning;
  h->local_shm_ = ShmAllReduce::create(local, tuning.window_chunk_bytes);
  int windows = h->local_shm_ ? 1 : 0;  // every host has one, or none is used
  MPI_Allreduce(MPI_IN_PLACE, &windows, 1, MPI_INT, MPI_MIN, comm);
  if (!windows) h->local_shm_.reset();
  // A rail per local rank of the smallest host: local rank r carries slice r
  // of R across hosts (as NCCL runs a ring per NIC), so the host steps are a
  // reduce-scatter and an all-gather in the window, and while one rail
  // folds a segment in, another keeps the link busy. Without windows, local
  // rank 0 carries the whole buffer.
  h->rails_ = h->local_shm_ ? smallest : 1;
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

// A rail carries at least tuning_.min_rail_bytes (2 MiB by default): below that, more rails only add
// rings of small messages. Measured on 4 namespace hosts x 2 ranks at
// 1 Gbit/s (idle ranks yielding): 1 MiB took 27-33 ms on two rails in two
// of three runs against 13 ms on one; 4 MiB took 59-62 ms on two rails
// against 70-71 ms on one, and 16 MiB 227-235 against 242-245 ms.
int HierarchicalAllReduce::rails_for(int64_t bytes) const {
  return static_cast<int>(std::clamp<int64_t>(bytes / tuning_.min_rail_bytes, 1, rails_));
}

void HierarchicalAllReduce::run(torch::Tensor& host, ReduceOp op) {
  const ReduceOp step = op == ReduceOp::kAvg ? ReduceOp::kSum : op;
  const MPI_Datatype type = mpi_type_of(host.scalar_type());
  const MPI_Op mpi_op = mpi_op_of(step, host.scalar_type());
  const int64_t count = host.numel(), elem = host.element_size();
  char* data = static_cast<char*>(host.data_ptr());
  if (local_shm_) {
    // Slice r of R for local rank r < R, nothing for the others.
    const int rails = rails_for(count * elem);
    ShmAllReduce::Slices slices;
    for (int r = 0; r < local_shm_->size(); ++r)
      slices.emplace_back(r < rails ? count * r / rails : count, r < rails ? count * (r + 1) / rails : count);
    local_shm_->reduce_scatter(host, step, slices);  // 1. this rank's slice holds the host's result
    // 2. the only step that crosses hosts: this rank's rail, its slice
    const auto [begin, end] = slices[static_cast<size_t>(local_rank_)];
    if (end > begin) rail_all_reduce(data + begin * elem, static_cast<int>(end - begin), type, mpi_op, elem);
    local_shm_->all_gather(host, slices);  // 3. every rail's slice to every rank of the host
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
// of all-gather, each rail member sending one 1/H chunk to its right
// neighbour while it receives one from its left. Each host's link carries
// 2(H-1)/H of the buffer, the least any all-reduce needs, and it is busy in
// every step. Each chunk is reduced along one path and then copied, so every
// rank gets the same bits. Measured on 4 namespace hosts x 2 ranks at
// 1 Gbit/s, 16 MiB, one rail, idle ranks yielding (docs/cluster.md): the
// whole hierarchical all-reduce took 259-280 ms with this ring, 348-359 ms
// with MPI_Reduce_scatter plus MPI_Allgatherv (Open MPI's recursive halving,
// then doubling, which leave links idle in some rounds), and earlier 459 ms
// with MPI_Allreduce among the leaders (recursive doubling: the whole
// buffer every round).
//
// Each chunk travels in segments of at most tuning_.ring_segment_bytes, and
// a segment moves on to the next step as soon as it has arrived and been
// folded in: a step does not wait for the whole chunk, so the link does not
// idle at the 2(H-1) step boundaries (NCCL pipelines its ring in slices the
// same way). Two rails, three runs each: 227-235 ms segmented, 229-238 ms
// whole.
void HierarchicalAllReduce::rail_all_reduce(void* data, int count, MPI_Datatype type, MPI_Op op, int64_t elem) {
  int rank = 0, hosts = 1;
  MPI_Comm_rank(rail_, &rank);
  MPI_Comm_size(rail_, &hosts);
  if (hosts < 2) return;
  RingPlan ring(count, hosts, rank, elem, tuning_.ring_segment_bytes);
  char* bytes = static_cast<char*>(data);
  const int steps = 2 * (hosts - 1), subs = ring.segments();
  // Reduce-scatter steps receive into one of two scratch chunks (step t
  // into t % 2) and fold it in; all-gather steps receive in place.
  std::vector<char> scratch[2];
  for (auto& s : scratch) s.resize(static_cast<size_t>(ring.max_chunk()) * static_cast<size_t>(elem));
  std::vector<MPI_Request> recvs(static_cast<size_t>(subs), MPI_REQUEST_NULL);
  std::vector<std::vector<MPI_Request>> sends(static_cast<size_t>(steps));  // by step
  auto wait_sends = [&](int t) {
    auto& r = sends[static_cast<size_t>(t)];
    check_mpi(MPI_Waitall(static_cast<int>(r.size()), r.data(), MPI_STATUSES_IGNORE), "all_reduce (across hosts)");
  };
  auto scratch_at = [&](int t, int64_t offset) {
    return scratch[t % 2].data() + (offset - ring.offset(ring.incoming(t))) * elem;
  };
  auto post_recvs = [&](int t) {
    const bool reducing = t < hosts - 1;
    // In place: the chunk must have left in reduce-scatter step t-(H-1) first.
    if (!reducing) wait_sends(t - (hosts - 1));
    for (int j = 0; j < subs; ++j) {
      const auto [offset, n] = ring.segment(ring.incoming(t), j);
      char* into = reducing ? scratch_at(t, offset) : bytes + offset * elem;
      check_mpi(
          MPI_Irecv(into, static_cast<int>(n), type, ring.left(), t * subs + j, rail_, &recvs[static_cast<size_t>(j)]),
          "all_reduce (across hosts)");
    }
  };
  auto send = [&](int t, int j) {
    const auto [offset, n] = ring.segment(ring.outgoing(t), j);
    auto& r = sends[static_cast<size_t>(t)];
    r.emplace_back();
    check_mpi(MPI_Isend(bytes + offset * elem, static_cast<int>(n), type, ring.right(), t * subs + j, rail_, &r.back()),
              "all_reduce (across hosts)");
  };
  post_recvs(0);
  for (int j = 0; j < subs; ++j) send(0, j);
  for (int t = 0; t < steps; ++t) {
    std::vector<MPI_Request> arriving = recvs;
    const bool next_reduces = t + 1 < hosts - 1;
    if (next_reduces) post_recvs(t + 1);  // into the other scratch chunk, before this step's arrive
    for (int j = 0; j < subs; ++j) {
      check_mpi(MPI_Wait(&arriving[static_cast<size_t>(j)], MPI_STATUS_IGNORE), "all_reduce (across hosts)");
      if (t < hosts - 1) {
        const auto [offset, n] = ring.segment(ring.incoming(t), j);
        check_mpi(MPI_Reduce_local(scratch_at(t, offset), bytes + offset * elem, static_cast<int>(n), type, op),
                  "all_reduce (across hosts)");
      }
      if (t + 1 < steps) send(t + 1, j);  // what arrived in step t leaves in step t+1
    }
    if (t + 1 < steps && !next_reduces) post_recvs(t + 1);
  }
  for (int t = 0; t < steps; ++t) wait_sends(t);
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
