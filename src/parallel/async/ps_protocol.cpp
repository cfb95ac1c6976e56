// src/parallel/async/ps_protocol.cpp — see ps_protocol.h. The one file of the
// parameter server that calls MPI itself: MPI_Iprobe(MPI_ANY_SOURCE) on the
// world communicator, which the Communicator interface does not offer (its
// receives name their source). Everything else goes through Communicator.
#include "parallel/async/ps_protocol.h"

#include "comm/mpi_communicator.h"
#include <paratorch/errors.h>

#include <chrono>
#include <cstring>
#include <thread>

namespace paratorch::async {
namespace {

int64_t bits(double v) {
  int64_t out;
  std::memcpy(&out, &v, sizeof out);
  return out;
}
double from_bits(int64_t v) {
  double out;
  std::memcpy(&out, &v, sizeof out);
  return out;
}

// Polls `ready` with the Communicator's back-off shape: spin briefly for
// latency, then sleep up to 200 us so a waiting rank leaves the cores to
// ranks that compute (the bench runs 5 ranks on 2 cores).
bool poll_until(const std::function<bool()>& ready, double limit_s) {
  const double deadline = now_s() + limit_s;
  auto sleep = std::chrono::microseconds(0);
  for (int polls = 0; !ready(); ++polls) {
    if (now_s() > deadline) return false;
    if (polls < 200) continue;
    sleep = std::min(std::chrono::microseconds(200), sleep + std::chrono::microseconds(10));
    std::this_thread::sleep_for(sleep);
  }
  return true;
}

}  // namespace

torch::Tensor Header::pack() const {
  return torch::tensor({static_cast<int64_t>(type), step, version, bits(value), bits(value2), numel, session}, torch::kLong);
}

Header Header::unpack(const torch::Tensor& words) {
  auto w = words.data_ptr<int64_t>();
  Header h;
  h.type = static_cast<MessageType>(w[0]);
  h.step = w[1];
  h.version = w[2];
  h.value = from_bits(w[3]);
  h.value2 = from_bits(w[4]);
  h.numel = w[5];
  h.session = w[6];
  return h;
}

void send_message(Communicator& comm, int dst, Header h, const torch::Tensor& payload, bool reply) {
  for (auto& work : post_message(comm, dst, h, payload, reply)) work->wait();
}

std::vector<WorkHandle> post_message(Communicator& comm, int dst, Header h, const torch::Tensor& payload, bool reply) {
  h.numel = payload.defined() ? payload.numel() : 0;
  std::vector<WorkHandle> works = {comm.send_async(h.pack(), dst, reply ? kReplyTag : kRequestTag)};
  if (h.numel > 0) works.push_back(comm.send_async(payload.contiguous(), dst, reply ? kReplyPayloadTag : kRequestPayloadTag));
  return works;
}

Header receive_reply(Communicator& comm, int src, torch::Tensor* payload, double timeout_s, const char* what,
                     const std::string& timeout_option) {
  auto words = torch::empty({kHeaderWords}, torch::kLong);
  auto work = comm.recv_async(words, src, kReplyTag);
  if (!poll_until([&] { return work->is_completed(); }, timeout_s))
    throw RuntimeFailure(std::string("paratorch: ps worker rank ") + std::to_string(comm.rank()) + " got no " + what +
                         " reply from server rank " + std::to_string(src) + " within " + std::to_string(timeout_s) +
                         " s (" + timeout_option + "); the server is gone or stuck");
  work->wait();
  Header h = Header::unpack(words);
  if (h.numel > 0) {
    const bool in_place = payload->defined() && payload->numel() == h.numel &&
                          payload->scalar_type() == torch::kFloat && payload->is_contiguous();
    if (!in_place) *payload = torch::empty({h.numel}, torch::kFloat);
    comm.recv(*payload, src, kReplyPayloadTag);
  }
  return h;
}

int wait_for_request(Communicator& comm, double idle_s, const std::function<bool()>& also) {
  auto* mpi = dynamic_cast<comm::MpiCommunicator*>(&comm);
  if (!mpi) throw RuntimeFailure("paratorch: the parameter server needs a communicator on the MPI backend");
  int source = -1;
  auto ready = [&] {
    int flag = 0;
    MPI_Status status;
    MPI_Iprobe(MPI_ANY_SOURCE, kRequestTag, mpi->mpi_comm(), &flag, &status);
    if (flag) source = status.MPI_SOURCE;
    return flag != 0 || (also && also());
  };
  return poll_until(ready, idle_s) ? source : -1;
}

Header receive_header(Communicator& comm, int src) {
  auto words = torch::empty({kHeaderWords}, torch::kLong);
  comm.recv(words, src, kRequestTag);  // probed: it is there
  return Header::unpack(words);
}

WorkHandle receive_payload_async(Communicator& comm, int src, const Header& h, torch::Tensor* payload) {
  if (h.numel == 0) return nullptr;
  *payload = torch::empty({h.numel}, torch::kFloat);
  return comm.recv_async(*payload, src, kRequestPayloadTag);
}

}  // namespace paratorch::async
