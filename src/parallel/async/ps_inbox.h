// src/parallel/async/ps_inbox.h — the requests a ps server has heard and not
// yet handled, by worker, in the order each worker sent them.
//
// A request's header is received as soon as it is probed; the gradient it
// announces, if any, is received in the background. So a worker that dies
// between the two (its host went down mid-push) holds up only its own
// requests: the server goes on hearing and answering the others, and names
// the stuck one once it has waited timeout_s (Server::check_silence). A
// worker's later requests wait behind its pending one, so each worker's
// messages are handled in the order it sent them (a pull after a push sees
// that push applied).
#pragma once
#include "parallel/async/ps_protocol.h"

#include <deque>
#include <optional>
#include <vector>

namespace paratorch::async {

class Inbox {
 public:
  struct Request {
    Header header;
    torch::Tensor payload;  // what the header announced (undefined when nothing)
    WorkHandle body;        // the payload's receive while it is in flight
    double heard_s = 0;     // when the header came
    bool failed = false;    // MPI reported the sender gone mid-transfer
  };

  explicit Inbox(size_t workers) : queues_(workers) {}
  Inbox(Inbox&&) = default;
  Inbox& operator=(Inbox&&) = default;
  /// Receives still in flight are abandoned (kept alive), not freed.
  ~Inbox();

  /// Receives the header that worker `w` (world rank `src`) sent, probed by
  /// wait_for_request, and starts receiving the payload it announces.
  void accept(Communicator& comm, int src, size_t w);
  /// Worker w's oldest request, removed, once its payload is here or failed.
  std::optional<Request> take_ready(size_t w);
  /// Whether some worker's oldest request can be taken.
  bool any_ready();
  /// How long worker w's oldest request has waited for its payload (0 when none waits).
  double waiting_s(size_t w, double now) const;
  /// Drops worker w's requests (it is lost); payloads in flight keep their buffers for MPI.
  void drop(size_t w);

 private:
  static bool ready(Request& r);
  /// Receives that may never complete, kept for the life of the process:
  /// MPI may still write into their buffers after this inbox is gone.
  static void abandon(Request r);

  std::vector<std::deque<Request>> queues_;
};

}  // namespace paratorch::async
