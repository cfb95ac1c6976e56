// src/parallel/async/ps_protocol.h — the messages between parameter-server workers and
// servers, and the one receive-from-any-source wait they need.
//
// Every message is a fixed header (kHeaderWords int64) on tag kRequestTag or
// kReplyTag, then, when its `numel` is non-zero, a float payload on the
// matching payload tag from the same rank (MPI keeps messages of one sender
// and tag in order). Servers are world ranks [0, S), workers [S, S + W)
// (so rank 0, which prints and writes metrics, is server 0).
//   PULL  worker -> server: step t, the shard version the worker holds
//   reply server -> worker: current version, payload only if it changed
//   PUSH  worker -> server: step t, version the gradient was computed on,
//                           the worker's loss, gradient payload
//   DONE  worker -> server: the worker finished its steps
//   REPORT worker -> server 0: steps, seconds (for steps/s), final loss
//   LEAVE worker -> server: the worker failed and is going (best effort; a
//                           crashed worker sends nothing and is found silent)
// Servers learn who speaks through wait_for_request, which probes any source
// (the Communicator has only known-source receives) under a deadline.
#pragma once
#include <paratorch/communicator.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace paratorch::async {

/// Seconds on a steady clock (every timing of this folder).
inline double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

enum class MessageType : int64_t { kPull = 1, kPush = 2, kDone = 3, kReport = 4, kShard = 5, kLeave = 6 };

constexpr int kRequestTag = 7100;
constexpr int kRequestPayloadTag = 7101;
constexpr int kReplyTag = 7102;
constexpr int kReplyPayloadTag = 7103;
constexpr int64_t kHeaderWords = 7;

struct Header {
  MessageType type = MessageType::kPull;
  int64_t step = 0;
  int64_t version = 0;
  double value = 0;   // PUSH: loss; REPORT: seconds
  double value2 = 0;  // REPORT: final local loss
  int64_t numel = 0;  // payload floats that follow
  /// Which parameter server the message belongs to: servers ignore requests
  /// of another (e.g. a finished one's late DONE on the same communicator).
  int64_t session = 0;
  torch::Tensor pack() const;
  static Header unpack(const torch::Tensor& words);
};

/// Sends `h` (and `payload` when h.numel > 0) on the request or reply tags.
void send_message(Communicator& comm, int dst, Header h, const torch::Tensor& payload, bool reply);

/// The same without waiting: the handles keep the header and payload alive
/// until they complete. A server replies this way, so a worker that died
/// before receiving its reply blocks nothing (a large payload's send would
/// wait for the receiver forever).
std::vector<WorkHandle> post_message(Communicator& comm, int dst, Header h, const torch::Tensor& payload, bool reply);

/// Receives a reply header from `src` and, when it carries one, its payload
/// into `payload`: straight into `*payload` when that is a contiguous float
/// tensor of the payload's size (a worker's parameter memory: no staging
/// copy), else into a new tensor. Waits at most `timeout_s`, then throws
/// RuntimeFailure naming `what` and the option `timeout_option` that sets the wait.
Header receive_reply(Communicator& comm, int src, torch::Tensor* payload, double timeout_s, const char* what,
                     const std::string& timeout_option);

/// Blocks until some rank's request header is waiting, and returns that
/// rank; -1 when `idle_s` passed first (the caller checks its deadlines) or
/// `also` (polled beside the probe) became true.
int wait_for_request(Communicator& comm, double idle_s, const std::function<bool()>& also = {});

/// Receives the request header from `src` (after wait_for_request).
Header receive_header(Communicator& comm, int src);

/// Starts receiving the payload `h` announced from `src` into a new
/// `*payload`; null when it announced none.
WorkHandle receive_payload_async(Communicator& comm, int src, const Header& h, torch::Tensor* payload);

}  // namespace paratorch::async
