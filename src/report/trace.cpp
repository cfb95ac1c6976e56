// src/report/trace.cpp — see trace.h.
#include "report/trace.h"

#include "report/svg_plot.h"

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstring>

namespace paratorch::report {
namespace {

/// Small, stable per-thread ids: 0 for the first thread that records (the
/// training loop), then communication threads in order of first use.
int trace_thread_id() {
  static std::atomic<int> next{0};
  thread_local int id = next++;
  return id;
}

}  // namespace

Tracer& Tracer::instance() {
  static Tracer tracer;
  return tracer;
}

void Tracer::enable(int rank) {
  std::lock_guard<std::mutex> lock(mutex_);
  rank_ = rank;
  enabled_ = true;
}

int64_t Tracer::now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch()).count();
}

void Tracer::record(std::string name, const char* category, int64_t start_us, int64_t dur_us) {
  if (!enabled_) return;
  int tid = trace_thread_id();
  std::lock_guard<std::mutex> lock(mutex_);
  events_.push_back(Event{std::move(name), category, start_us, dur_us, tid});
}

std::string Tracer::events_json() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::string out;
  auto append = [&](const nlohmann::json& j) {
    if (!out.empty()) out += ",\n";
    out += j.dump();
  };
  append({{"ph", "M"}, {"name", "process_name"}, {"pid", rank_}, {"args", {{"name", "rank " + std::to_string(rank_)}}}});
  for (const auto& e : events_)
    append({{"name", e.name}, {"cat", e.category}, {"ph", "X"}, {"ts", e.start_us},
            {"dur", e.dur_us}, {"pid", rank_}, {"tid", e.tid}});
  return out;
}

size_t Tracer::event_count() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return events_.size();
}

void Tracer::clear() {
  std::lock_guard<std::mutex> lock(mutex_);
  events_.clear();
}

Tracer::Span::Span(std::string name, const char* category) : name_(std::move(name)), category_(category) {
  if (Tracer::instance().enabled()) start_us_ = now_us();
}

Tracer::Span::~Span() {
  if (start_us_ >= 0) Tracer::instance().record(std::move(name_), category_, start_us_, now_us() - start_us_);
}

void write_trace(Communicator& world, const std::string& path) {
  std::string mine = Tracer::instance().events_json();
  // Ranks' texts differ in length: gather lengths, then padded bytes.
  auto lengths = torch::empty({world.size()}, torch::kLong);
  world.all_gather(lengths, torch::tensor({static_cast<int64_t>(mine.size())}, torch::kLong));
  int64_t longest = lengths.max().item<int64_t>();
  auto padded = torch::zeros({longest}, torch::kByte);
  std::memcpy(padded.data_ptr(), mine.data(), mine.size());
  auto all = torch::empty({longest * world.size()}, torch::kByte);
  world.all_gather(all, padded);
  if (world.rank() != 0) return;
  const char* bytes = static_cast<const char*>(all.data_ptr());
  std::vector<std::string> texts;
  for (int r = 0; r < world.size(); ++r)
    texts.emplace_back(bytes + r * longest, static_cast<size_t>(lengths[r].item<int64_t>()));
  write_text_file(path, trace_document(texts));
}

std::string trace_document(const std::vector<std::string>& rank_events) {
  std::string doc = "{\"displayTimeUnit\": \"ms\", \"traceEvents\": [\n";
  bool first = true;
  for (const auto& text : rank_events) {
    if (text.empty()) continue;
    if (!first) doc += ",\n";
    doc += text;
    first = false;
  }
  doc += "\n]}\n";
  return doc;
}

}  // namespace paratorch::report
