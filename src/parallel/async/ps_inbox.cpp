// src/parallel/async/ps_inbox.cpp — see ps_inbox.h.
#include "parallel/async/ps_inbox.h"

namespace paratorch::async {

void Inbox::accept(Communicator& comm, int src, size_t w) {
  Request r;
  r.header = receive_header(comm, src);
  r.body = receive_payload_async(comm, src, r.header, &r.payload);
  r.heard_s = now_s();
  queues_.at(w).push_back(std::move(r));
}

bool Inbox::ready(Request& r) {
  if (!r.body || r.failed) return true;
  try {
    if (!r.body->is_completed()) return false;
    r.body = nullptr;
  } catch (const std::exception&) {
    r.failed = true;  // the sender died mid-transfer
  }
  return true;
}

std::optional<Inbox::Request> Inbox::take_ready(size_t w) {
  auto& queue = queues_.at(w);
  if (queue.empty() || !ready(queue.front())) return std::nullopt;
  Request r = std::move(queue.front());
  queue.pop_front();
  if (r.failed) abandon(r);
  return r;
}

bool Inbox::any_ready() {
  for (auto& queue : queues_)
    if (!queue.empty() && ready(queue.front())) return true;
  return false;
}

double Inbox::waiting_s(size_t w, double now) const {
  const auto& queue = queues_.at(w);
  return queue.empty() || !queue.front().body ? 0 : now - queue.front().heard_s;
}

void Inbox::abandon(Request r) {
  static auto* kept = new std::vector<Request>();  // never freed, on purpose
  kept->push_back(std::move(r));
}

Inbox::~Inbox() {
  for (size_t w = 0; w < queues_.size(); ++w) drop(w);
}

void Inbox::drop(size_t w) {
  for (auto& r : queues_.at(w))
    if (r.body) abandon(std::move(r));
  queues_.at(w).clear();
}

}  // namespace paratorch::async
