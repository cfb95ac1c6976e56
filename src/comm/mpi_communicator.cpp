// src/comm/mpi_communicator.cpp — see mpi_communicator.h.
#include "comm/mpi_communicator.h"

#include "comm/debug_check.h"
#include "comm/flight_recorder.h"
#include "comm/mpi_buffers.h"
#include "comm/watchdog.h"
#include <paratorch/errors.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace paratorch::comm {
namespace {

/// A point-to-point transfer in flight; wait() drives MPI's progress.
class RequestWork : public Work {
 public:
  RequestWork(MPI_Request request, StagedBuffer buffer, OpInfo info, double timeout_s)
      : request_(request), buffer_(std::move(buffer)), info_(std::move(info)), timeout_s_(timeout_s),
        flight_id_(FlightRecorder::instance().record(info_, FlightState::kStarted)) {}

  void wait() override {
    if (done_) return;
    Watchdog::Scope deadline(info_, timeout_s_);
    // Spin briefly (latency of small messages), then back off with sleeps so
    // a rank waiting for a slow peer leaves the cores to compute threads.
    auto sleep = std::chrono::microseconds(0);
    for (int polls = 0; !test(); ++polls) {
      if (polls < 2000) continue;
      sleep = std::min(std::chrono::microseconds(200), sleep + std::chrono::microseconds(10));
      std::this_thread::sleep_for(sleep);
    }
  }
  bool is_completed() override { return done_ || test(); }

 private:
  bool test() {
    int flag = 0;
    check_mpi(MPI_Test(&request_, &flag, MPI_STATUS_IGNORE), info_.op.c_str());
    if (flag) {
      buffer_.copy_back();
      done_ = true;
      FlightRecorder::instance().mark(flight_id_, FlightState::kDone);
    }
    return flag != 0;
  }

  MPI_Request request_;
  StagedBuffer buffer_;
  OpInfo info_;
  double timeout_s_;
  uint64_t flight_id_;
  bool done_ = false;
};

}  // namespace


MpiCommunicator::MpiCommunicator(MPI_Comm comm, std::string name, CommOptions options)
    : comm_(comm), name_(std::move(name)), options_(options) {
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank_);
  world_ranks_.resize(static_cast<size_t>(size_));
  check_mpi(MPI_Allgather(&world_rank_, 1, MPI_INT, world_ranks_.data(), 1, MPI_INT, comm_),
            "communicator set-up");
  group_key_ = group_key_of(name_, world_ranks_);
  queue_ = std::make_unique<OpQueue>(options_.timeout_s);
}

MpiCommunicator::~MpiCommunicator() {
  queue_.reset();  // drains and joins the communication thread first
  shm_.reset();    // the windows belong to comm_
  hierarchical_.reset();
  symmetric_.clear();
  shared_.clear();
  if (comm_ != MPI_COMM_WORLD && comm_ != MPI_COMM_NULL) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }
}

OpInfo MpiCommunicator::collective_info(const std::string& op, const torch::Tensor& tensor,
                                        int peer) {
  OpInfo info = make_op_info(op, tensor);
  info.group = name_;
  info.world_rank = world_rank_;
  info.group_rank = rank_;
  info.group_size = size_;
  info.group_world_ranks = world_ranks_;
  info.peer = peer;
  info.group_key = group_key_;
  // Point-to-point ops are numbered apart: only collectives must line up
  // across the whole group (the debug check and the peer probe compare them).
  info.sequence = info.is_p2p() ? p2p_sequence_++ : sequence_++;
  count_sent_bytes(info.op, info.bytes, size_);
  return info;
}

PendingOp MpiCommunicator::with_debug_check(OpInfo info, std::function<void()> run) {
  if (options_.debug_checks) {
    MPI_Comm comm = comm_;
    run = [comm, info, run = std::move(run)] {
      check_collective_agreement(comm, info);
      run();
    };
  }
  return PendingOp{std::move(info), std::move(run)};
}

WorkHandle MpiCommunicator::submit(PendingOp op) { return queue_->submit(std::move(op.info), std::move(op.run)); }
void MpiCommunicator::run_now(PendingOp op) { queue_->run_now(std::move(op.info), std::move(op.run)); }

// Asynchronous forms go through the communication thread; blocking forms run
// on the caller when the queue is idle.
WorkHandle MpiCommunicator::all_reduce_async(torch::Tensor t, ReduceOp op) { return submit(make_all_reduce(std::move(t), op)); }
WorkHandle MpiCommunicator::broadcast_async(torch::Tensor t, int root) { return submit(make_broadcast(std::move(t), root)); }
WorkHandle MpiCommunicator::all_gather_async(torch::Tensor out, torch::Tensor in) { return submit(make_all_gather(std::move(out), std::move(in))); }
WorkHandle MpiCommunicator::reduce_scatter_async(torch::Tensor out, torch::Tensor in, ReduceOp op) { return submit(make_reduce_scatter(std::move(out), std::move(in), op)); }
WorkHandle MpiCommunicator::all_to_all_async(torch::Tensor out, torch::Tensor in) { return submit(make_all_to_all(std::move(out), std::move(in))); }
WorkHandle MpiCommunicator::barrier_async() { return submit(make_barrier()); }
void MpiCommunicator::all_reduce(torch::Tensor t, ReduceOp op) { run_now(make_all_reduce(std::move(t), op)); }
void MpiCommunicator::broadcast(torch::Tensor t, int root) { run_now(make_broadcast(std::move(t), root)); }
void MpiCommunicator::all_gather(torch::Tensor out, torch::Tensor in) { run_now(make_all_gather(std::move(out), std::move(in))); }
void MpiCommunicator::reduce_scatter(torch::Tensor out, torch::Tensor in, ReduceOp op) { run_now(make_reduce_scatter(std::move(out), std::move(in), op)); }
void MpiCommunicator::all_to_all(torch::Tensor out, torch::Tensor in) { run_now(make_all_to_all(std::move(out), std::move(in))); }
void MpiCommunicator::barrier() { run_now(make_barrier()); }

void MpiCommunicator::check_peer(int peer, const char* what) const {
  if (peer < 0 || peer >= size_)
    throw UsageError(std::string("paratorch: ") + what + " rank " + std::to_string(peer) +
                     " is outside group '" + name_ + "' of size " + std::to_string(size_));
}

// The window when every rank is on this node and it measured faster than
// MPI for this size (ShmAllReduce::beats_mpi; PARATORCH_SHM=always: whenever
// it exists). Runs inside the op, so every rank takes the same branch.
ShmAllReduce* MpiCommunicator::shm_for(const torch::Tensor& host) {
  if (!options_.shm_collectives || !ShmAllReduce::suits(host)) return nullptr;
  if (shm_state_ == ShmState::kUntried) {
    shm_ = ShmAllReduce::create(comm_);
    shm_state_ = shm_ ? ShmState::kOn : ShmState::kOff;
  }
  if (!shm_) return nullptr;
  static const bool always = [] {
    const char* shm = std::getenv("PARATORCH_SHM");
    return shm && std::string(shm) == "always";
  }();
  const int64_t bytes = host.numel() * static_cast<int64_t>(host.element_size());
  return always || shm_->beats_mpi(bytes) ? shm_.get() : nullptr;
}

// Reduce inside each host, all-reduce among the hosts' leaders, broadcast
// inside each host, when the group spans hosts (several ranks on at least
// one) and that measured faster than flat MPI for this size class.
// PARATORCH_HIERARCHICAL=0: never; =always: whenever the group spans hosts.
HierarchicalAllReduce* MpiCommunicator::hierarchical_for(const torch::Tensor& host) {
  const char* env = std::getenv("PARATORCH_HIERARCHICAL");
  const std::string mode = env ? env : "";
  if (mode == "0" || !ShmAllReduce::suits(host)) return nullptr;
  if (hierarchical_state_ == ShmState::kUntried) {
    hierarchical_ = HierarchicalAllReduce::create(comm_);
    hierarchical_state_ = hierarchical_ ? ShmState::kOn : ShmState::kOff;
  }
  if (!hierarchical_) return nullptr;
  const int64_t bytes = host.numel() * static_cast<int64_t>(host.element_size());
  return mode == "always" || hierarchical_->beats_flat(bytes) ? hierarchical_.get() : nullptr;
}

SymmetricBuffer* MpiCommunicator::symmetric_for(const torch::Tensor& tensor) {
  for (auto& buffer : symmetric_)
    if (buffer->contains(tensor)) return buffer.get();
  return nullptr;
}

torch::Tensor MpiCommunicator::allocate_reduce_buffer(int64_t numel, torch::ScalarType dtype) {
  // PARATORCH_SHM=copy keeps the copying shared-memory path (shm_all_reduce.h)
  // for these buffers too: the A/B switch of bench/ddp.
  const char* shm = std::getenv("PARATORCH_SHM");
  const bool copy_only = shm && std::string(shm) == "copy";
  if (!options_.shm_collectives || copy_only || size_ < 2 || (dtype != torch::kFloat && dtype != torch::kDouble))
    return Communicator::allocate_reduce_buffer(numel, dtype);
  torch::Tensor out;
  OpInfo info = collective_info("allocate_reduce_buffer", torch::empty({numel}, torch::TensorOptions().dtype(dtype)));
  MPI_Comm comm = comm_;
  run_now(PendingOp{std::move(info), [&, comm] {
    if (auto buffer = SymmetricBuffer::create(comm, numel, dtype)) {
      out = buffer->local();
      symmetric_.push_back(std::move(buffer));
    }
  }});
  return out.defined() ? out : Communicator::allocate_reduce_buffer(numel, dtype);
}

torch::Tensor MpiCommunicator::allocate_shared_buffer(int64_t numel, torch::ScalarType dtype) {
  if (!options_.shm_collectives || size_ < 2) return {};
  torch::Tensor out;
  OpInfo info = collective_info("allocate_shared_buffer", torch::empty({numel}, torch::TensorOptions().dtype(dtype)));
  MPI_Comm comm = comm_;
  run_now(PendingOp{std::move(info), [&, comm] {
    const int64_t bytes = numel * static_cast<int64_t>(c10::elementSize(dtype));
    if (auto window = ShmWindow::create_one_copy(comm, bytes)) {
      if (window->rank() == 0) std::memset(window->segment(0), 0, static_cast<size_t>(bytes));
      out = torch::from_blob(window->segment(0), {numel}, torch::TensorOptions().dtype(dtype));
      shared_.push_back(std::move(window));
    }
    check_mpi(MPI_Barrier(comm), "allocate_shared_buffer");  // zeroed before anyone uses it
  }});
  return out;
}

PendingOp MpiCommunicator::make_all_reduce(torch::Tensor tensor, ReduceOp op) {
  OpInfo info = collective_info("all_reduce", tensor);
  MPI_Comm comm = comm_;
  int size = size_;
  return with_debug_check(std::move(info), [=]() mutable {
    if (SymmetricBuffer* symmetric = symmetric_for(tensor)) {  // peers read it in place
      symmetric->all_reduce(tensor, op);
      return;
    }
    StagedBuffer b = stage(tensor, /*for_reduction=*/true, /*written=*/true, op);
    if (ShmAllReduce* shm = shm_for(b.host)) {  // every rank on this node: no MPI transfer
      shm->run(b.host, op);
      b.copy_back();
      return;
    }
    if (HierarchicalAllReduce* h = hierarchical_for(b.host)) {  // the group spans hosts
      h->run(b.host, op);
      b.copy_back();
      return;
    }
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, b.data(), b.count(), b.mpi_type(), mpi_op_of(op, b.host.scalar_type()), comm),
              "all_reduce");
    if (op == ReduceOp::kAvg) divide_in_place(b.host, size);
    b.copy_back();
  });
}

PendingOp MpiCommunicator::make_broadcast(torch::Tensor tensor, int root) {
  check_peer(root, "broadcast root");
  OpInfo info = collective_info("broadcast", tensor, root);
  MPI_Comm comm = comm_;
  return with_debug_check(std::move(info), [=]() mutable {
    StagedBuffer b = stage(tensor, false, true);
    check_mpi(MPI_Bcast(b.data(), b.count(), b.mpi_type(), root, comm), "broadcast");
    b.copy_back();
  });
}

PendingOp MpiCommunicator::make_all_gather(torch::Tensor output, torch::Tensor input) {
  if (output.numel() != input.numel() * size_ || output.scalar_type() != input.scalar_type())
    throw UsageError("paratorch: all_gather on group '" + name_ + "' needs output of " +
                     std::to_string(input.numel() * size_) + " elements of the input's dtype, got " +
                     std::to_string(output.numel()));
  OpInfo info = collective_info("all_gather", input);
  MPI_Comm comm = comm_;
  return with_debug_check(std::move(info), [=]() mutable {
    StagedBuffer in = stage(input, false, false);
    StagedBuffer out = stage(output, false, true);
    check_mpi(MPI_Allgather(in.data(), in.count(), in.mpi_type(), out.data(), in.count(),
                            out.mpi_type(), comm),
              "all_gather");
    out.copy_back();
  });
}

namespace {

// Open MPI's MPI_Reduce_scatter_block allocates temporaries of twice the
// whole input (measured, 4 ranks, 27 MiB input: +56 MiB resident), which
// for ZeRO-3's per-block gradients is as much as two more blocks. Inputs
// above kReduceScatterChunkBytes are reduced in column chunks instead: for
// chunk [j, j + n) of every rank's segment, the P slices are copied into one
// staging buffer (P × n, rank order, what MPI_Reduce_scatter_block expects)
// and reduced into out[j, j + n). Temporaries are then bounded by about
// three chunks, whatever the input size. Each output element is still the
// reduction of the same P values (MPI may sum them in another order for the
// smaller calls, as it may for any size). Costs one extra copy of the input.
constexpr int64_t kReduceScatterChunkBytes = 4 << 20;

void reduce_scatter_in_chunks(const StagedBuffer& in, const StagedBuffer& out, ReduceOp op, int size, MPI_Comm comm) {
  const int64_t segment = out.host.numel();
  const int64_t element = static_cast<int64_t>(out.host.element_size());
  const int64_t chunk = std::max<int64_t>(1, kReduceScatterChunkBytes / (element * size));
  if (segment <= chunk) {
    check_mpi(MPI_Reduce_scatter_block(in.data(), out.data(), out.count(), out.mpi_type(), mpi_op_of(op, out.host.scalar_type()), comm),
              "reduce_scatter");
    return;
  }
  std::vector<char> staging(static_cast<size_t>(chunk * size * element));
  const char* src = static_cast<const char*>(in.data());
  char* dst = static_cast<char*>(out.data());
  for (int64_t j = 0; j < segment; j += chunk) {
    const int64_t n = std::min(chunk, segment - j);
    for (int r = 0; r < size; ++r)
      std::memcpy(staging.data() + r * n * element, src + (r * segment + j) * element, static_cast<size_t>(n * element));
    check_mpi(MPI_Reduce_scatter_block(staging.data(), dst + j * element, static_cast<int>(n), out.mpi_type(),
                                       mpi_op_of(op, out.host.scalar_type()), comm),
              "reduce_scatter");
  }
}

}  // namespace

PendingOp MpiCommunicator::make_reduce_scatter(torch::Tensor output, torch::Tensor input, ReduceOp op) {
  if (input.numel() != output.numel() * size_ || output.scalar_type() != input.scalar_type())
    throw UsageError("paratorch: reduce_scatter on group '" + name_ + "' needs input of " +
                     std::to_string(output.numel() * size_) + " elements of the output's dtype, got " +
                     std::to_string(input.numel()));
  OpInfo info = collective_info("reduce_scatter", input);
  MPI_Comm comm = comm_;
  int size = size_, rank = rank_;
  return with_debug_check(std::move(info), [=]() mutable {
    const bool in_place = output.is_contiguous() && input.is_contiguous() &&
                          output.data_ptr() == static_cast<char*>(input.data_ptr()) + rank * output.nbytes();
    if (SymmetricBuffer* symmetric = symmetric_for(input); symmetric && in_place) {
      symmetric->reduce_scatter(input, op);  // peers read their chunks of my copy in place
      return;
    }
    // MPI forbids aliased send and receive buffers: reduce from a copy.
    if (in_place || output.is_alias_of(input)) input = input.clone();
    StagedBuffer in = stage(input, true, false, op);
    StagedBuffer out = stage(output, true, true, op);
    reduce_scatter_in_chunks(in, out, op, size, comm);
    if (op == ReduceOp::kAvg) divide_in_place(out.host, size);
    out.copy_back();
  });
}

PendingOp MpiCommunicator::make_all_to_all(torch::Tensor output, torch::Tensor input) {
  if (input.numel() % size_ != 0 || output.numel() != input.numel() || output.scalar_type() != input.scalar_type())
    throw UsageError("paratorch: all_to_all on group '" + name_ + "' needs input and output of the same dtype and " +
                     "length, a multiple of the group's size " + std::to_string(size_) + "; got " +
                     std::to_string(input.numel()) + " and " + std::to_string(output.numel()) + " elements");
  OpInfo info = collective_info("all_to_all", input);
  MPI_Comm comm = comm_;
  const int size = size_;
  return with_debug_check(std::move(info), [=]() mutable {
    if (output.is_alias_of(input)) input = input.clone();  // MPI forbids aliased buffers
    StagedBuffer in = stage(input, false, false);
    StagedBuffer out = stage(output, false, true);
    const int slot = in.count() / size;
    check_mpi(MPI_Alltoall(in.data(), slot, in.mpi_type(), out.data(), slot, out.mpi_type(), comm), "all_to_all");
    out.copy_back();
  });
}

PendingOp MpiCommunicator::make_barrier() {
  OpInfo info = collective_info("barrier", torch::Tensor());
  MPI_Comm comm = comm_;
  return with_debug_check(std::move(info), [comm] { check_mpi(MPI_Barrier(comm), "barrier"); });
}

WorkHandle MpiCommunicator::send_async(torch::Tensor tensor, int dst, int tag) {
  check_peer(dst, "send destination");
  OpInfo info = collective_info("send", tensor, dst);
  StagedBuffer b = stage(tensor, false, false);
  MPI_Request request;
  check_mpi(MPI_Isend(b.data(), b.count(), b.mpi_type(), dst, tag, comm_, &request), "send");
  return std::make_shared<RequestWork>(request, std::move(b), std::move(info), options_.timeout_s);
}

WorkHandle MpiCommunicator::recv_async(torch::Tensor tensor, int src, int tag) {
  check_peer(src, "receive source");
  OpInfo info = collective_info("recv", tensor, src);
  StagedBuffer b = stage(tensor, false, true);
  MPI_Request request;
  check_mpi(MPI_Irecv(b.data(), b.count(), b.mpi_type(), src, tag, comm_, &request), "recv");
  return std::make_shared<RequestWork>(request, std::move(b), std::move(info), options_.timeout_s);
}

std::shared_ptr<Communicator> MpiCommunicator::split(int color, int key, const std::string& name) {
  OpInfo info = collective_info("split", torch::Tensor());
  MPI_Comm parent = comm_;
  MPI_Comm child = MPI_COMM_NULL;
  // Through the queue, so the split is ordered with this group's collectives.
  run_now(with_debug_check(std::move(info), [&] {
    check_mpi(MPI_Comm_split(parent, color, key, &child), "communicator split");
  }));
  return std::make_shared<MpiCommunicator>(child, name, options_);
}

}  // namespace paratorch::comm
