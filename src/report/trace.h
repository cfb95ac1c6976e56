// src/report/trace.h — trace.json in Chrome's trace-event format (open it in
// Perfetto or chrome://tracing): one process per rank, one row per thread.
//
// Recording is off until enable(); a disabled Span costs one branch. Spans
// are complete events ("ph":"X") with wall-clock microseconds, so ranks on
// one machine line up. The communication threads record every collective
// they run, so each DDP bucket's all-reduce shows beside backward.
#pragma once
#include <paratorch/communicator.h>

#include <chrono>
#include <atomic>
#include <mutex>
#include <string>
#include <vector>

namespace paratorch::report {

class Tracer {
 public:
  static Tracer& instance();
  void enable(int rank);
  /// Stops recording (events so far are kept), e.g. after the traced steps.
  void disable() { enabled_ = false; }
  bool enabled() const { return enabled_; }
  /// Records an event that started at `start_us` and lasted `dur_us`.
  void record(std::string name, const char* category, int64_t start_us, int64_t dur_us);
  /// This rank's events, as comma-separated JSON objects.
  std::string events_json() const;
  size_t event_count() const;
  void clear();
  static int64_t now_us();

  /// Scoped event: from construction to destruction.
  class Span {
   public:
    Span(std::string name, const char* category);
    ~Span();
    Span(const Span&) = delete;
    Span& operator=(const Span&) = delete;
   private:
    std::string name_;
    const char* category_;
    int64_t start_us_ = -1;
  };

 private:
  struct Event {
    std::string name;
    const char* category;
    int64_t start_us, dur_us;
    int tid;
  };
  std::atomic<bool> enabled_{false};  // read by communication threads
  int rank_ = 0;
  mutable std::mutex mutex_;
  std::vector<Event> events_;
  std::vector<std::string> thread_names_;
};

/// Collective over `world`: gathers every rank's events and rank 0 writes
/// {"traceEvents": [...]} to `path`.
void write_trace(Communicator& world, const std::string& path);

/// The trace.json document from ranks' events_json() texts (empty ones are
/// skipped): for writers that gather them otherwise (src/parallel/async/ps_trace.h).
std::string trace_document(const std::vector<std::string>& rank_events);

}  // namespace paratorch::report
