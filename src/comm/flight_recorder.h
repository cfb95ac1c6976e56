// src/comm/flight_recorder.h — the ring buffer of this rank's last
// operations, its JSON form and its dump (public side: paratorch/flight_recorder.h).
//
// The communicator reports each operation's life: queued (submitted to the
// communication thread), started (running, or a transfer posted), done or
// failed. One mutex guards the ring; an operation costs two or three short
// critical sections, nothing beside an MPI call. Timestamps are the system
// clock in microseconds, so records of ranks on one host line up (across
// hosts, as well as their clocks agree).
#pragma once
#include "comm/op_info.h"

#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace paratorch::comm {

enum class FlightState { kQueued, kStarted, kDone, kFailed };

/// "queued", "started", "done", "failed".
const char* flight_state_name(FlightState state);

struct FlightEntry {
  uint64_t id = 0;  // n-th operation this rank recorded, from 0
  OpInfo info;
  FlightState state = FlightState::kQueued;
  int64_t queued_us = 0;   // 0: never queued (started directly)
  int64_t started_us = 0;  // 0: not started yet
  int64_t done_us = 0;     // 0: not finished
};

class FlightRecorder {
 public:
  /// Returned by record() when the recorder is off.
  static constexpr uint64_t kNone = ~0ull;

  static FlightRecorder& instance();

  /// Capacity (0: off) and dump folder; keeps what is recorded when the
  /// capacity is unchanged.
  void configure(int capacity, std::string dump_dir);
  /// Who this process is, for the dump's header.
  void set_identity(int world_rank, int world_size, std::string host);

  /// A new operation, queued or already started; returns its id.
  uint64_t record(const OpInfo& info, FlightState state);
  /// Moves operation `id` to `state` (a no-op once the ring overwrote it).
  void mark(uint64_t id, FlightState state);

  /// The entries still held, oldest first.
  std::vector<FlightEntry> snapshot() const;
  /// The record as JSON text (docs/faults.md gives the format).
  std::string to_json(const std::string& reason) const;
  /// Writes dump_dir/rank-K.json atomically; "" when there is no folder or
  /// the write failed (said on stderr). Never throws.
  std::string dump(const std::string& reason) noexcept;

 private:
  FlightRecorder() = default;

  mutable std::mutex mutex_;
  std::mutex dump_mutex_;  // one writer of rank-K.json at a time (its temp file is per process)
  std::vector<FlightEntry> ring_;
  uint64_t next_id_ = 0;
  std::string dump_dir_;
  int world_rank_ = 0;
  int world_size_ = 1;
  std::string host_;
};

/// Microseconds since the epoch (system clock).
int64_t now_us();

/// RAII: marks an operation started on entry, done (or failed, when left by
/// an exception) on exit.
class FlightScope {
 public:
  FlightScope(uint64_t id) : id_(id) { FlightRecorder::instance().mark(id_, FlightState::kStarted); }
  ~FlightScope();
  FlightScope(const FlightScope&) = delete;
  FlightScope& operator=(const FlightScope&) = delete;
 private:
  uint64_t id_;
  int uncaught_ = std::uncaught_exceptions();
};

/// Installs the SIGUSR1 handler (and, when `on_sigterm` is given, a SIGTERM
/// handler) and the thread that acts for them: SIGUSR1 writes the record;
/// SIGTERM runs `on_sigterm`, then ends the process as SIGTERM would.
/// Idempotent; stop_dump_on_signal() restores the handlers and ends the thread.
void start_dump_on_signal(bool on_sigusr1, std::function<void()> on_sigterm = {});
void stop_dump_on_signal();

}  // namespace paratorch::comm
