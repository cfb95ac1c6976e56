// src/parallel/async/ps_trace.cpp — see ps_trace.h.
#include "parallel/async/ps_trace.h"

#include "parallel/async/ps_protocol.h"
#include "report/svg_plot.h"
#include "report/trace.h"

#include <chrono>
#include <cstring>
#include <thread>

namespace paratorch::async {
namespace {

constexpr int kTraceLengthTag = 7105;
constexpr int kTraceTextTag = 7106;

// Polls `work` until it completes or `deadline` (now_s) passes.
bool finish_by(const WorkHandle& work, double deadline) {
  while (!work->is_completed()) {
    if (now_s() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace

void send_trace(Communicator& world, double timeout_s) {
  const std::string text = report::Tracer::instance().events_json();
  auto length = torch::tensor({static_cast<int64_t>(text.size())}, torch::kLong);
  auto bytes = torch::empty({static_cast<int64_t>(text.size())}, torch::kByte);
  std::memcpy(bytes.data_ptr(), text.data(), text.size());
  const double deadline = now_s() + timeout_s;
  auto first = world.send_async(length, 0, kTraceLengthTag);
  auto second = world.send_async(bytes, 0, kTraceTextTag);
  if (finish_by(first, deadline) && finish_by(second, deadline)) return;
  static std::vector<WorkHandle> abandoned;  // never complete: keep the buffers for MPI
  abandoned.push_back(first);
  abandoned.push_back(second);
}

void write_ps_trace(Communicator& world, const std::vector<int>& ranks, double timeout_s, const std::string& path) {
  std::vector<std::string> texts = {report::Tracer::instance().events_json()};
  const double deadline = now_s() + timeout_s;
  static std::vector<WorkHandle> abandoned;
  for (int r : ranks) {
    auto length = torch::zeros({1}, torch::kLong);
    auto work = world.recv_async(length, r, kTraceLengthTag);
    if (!finish_by(work, deadline)) {
      abandoned.push_back(work);
      continue;
    }
    auto bytes = torch::empty({length.item<int64_t>()}, torch::kByte);
    world.recv(bytes, r, kTraceTextTag);
    texts.emplace_back(static_cast<const char*>(bytes.data_ptr()), static_cast<size_t>(bytes.numel()));
  }
  report::write_text_file(path, report::trace_document(texts));
}

}  // namespace paratorch::async
