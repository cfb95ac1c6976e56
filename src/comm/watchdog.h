// src/comm/watchdog.h — deadlines for every wait.
//
// Any code about to block on communication registers a ticket (what it waits
// for, and until when). One process-wide thread checks the earliest deadline;
// when it passes, the expiry handler asks the op's peers where they are
// (peer_probe.h), prints the operation (rank, group, op, sizes) with the
// peers found dead or silent, and ends the job with MPI_Abort, so a skipped
// collective or a dead peer never hangs the job. Tests may swap the handler.
//
// The tickets also say how far this rank got: the last collective it entered
// on each group, and what it waits in now. The peer probe answers other
// ranks' questions from that.
#pragma once
#include "comm/op_info.h"

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

namespace paratorch::comm {

class Watchdog {
 public:
  using Clock = std::chrono::steady_clock;
  using ExpiryHandler = std::function<void(const OpInfo&, double timeout_s)>;

  static Watchdog& instance();

  /// Registers a wait that must end within timeout_s; returns its ticket.
  uint64_t watch(const OpInfo& info, double timeout_s);
  /// The wait ended in time.
  void unwatch(uint64_t ticket);
  /// Replaces what happens at expiry (default: message + MPI_Abort).
  void set_expiry_handler(ExpiryHandler handler);
  /// Stops the thread (at MPI finalize).
  void shutdown();

  /// The last collective this rank entered on one group (OpInfo::group_key).
  struct Progress {
    int64_t sequence = -1;  // -1: none yet
    std::string op;
    bool in_flight = false;  // entered and not yet completed
  };
  Progress progress_of(uint64_t group_key);
  /// The oldest wait in progress, described; empty when none.
  std::string waiting_in();
  /// The oldest wait in progress and how long it has waited; false when none.
  bool oldest_wait(OpInfo* info, double* waited_s);

  /// RAII ticket.
  class Scope {
   public:
    Scope(const OpInfo& info, double timeout_s) : ticket_(instance().watch(info, timeout_s)) {}
    ~Scope() { instance().unwatch(ticket_); }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
   private:
    uint64_t ticket_;
  };

 private:
  Watchdog() = default;
  ~Watchdog();
  void run();

  struct Entry {
    OpInfo info;
    double timeout_s;
    Clock::time_point deadline;
  };
  std::mutex mutex_;
  std::condition_variable wake_;
  std::map<uint64_t, Entry> entries_;
  std::map<uint64_t, Progress> progress_;  // by group key
  uint64_t next_ticket_ = 1;
  bool stopping_ = false;
  std::thread thread_;
  ExpiryHandler handler_;
};

/// The default expiry handler: probes the op's peers (a few seconds at most),
/// prints the report naming the dead or silent ones, and calls MPI_Abort.
[[noreturn]] void abort_job_on_deadline(const OpInfo& info, double timeout_s);

/// What a rank does on SIGTERM (FlightRecorderOptions::report_on_sigterm):
/// writes its flight record; when it waits in an operation, asks the peers
/// (kSigtermProbeS at most) and prints one line naming the operation, its
/// group and the dead or silent peers. Under the supervising launcher
/// (PARATORCH_ERROR_DIR set) it prints nothing: that launcher speaks for the
/// job. Returns; the caller ends the process.
void report_termination();

/// Open MPI sends SIGKILL a second after SIGTERM (odls_base_sigkill_timeout).
inline constexpr double kSigtermProbeS = 0.5;

}  // namespace paratorch::comm
