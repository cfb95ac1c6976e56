// src/comm/watchdog.cpp — the deadline thread (see watchdog.h).
#include "comm/watchdog.h"

#include "comm/flight_recorder.h"
#include "comm/host_table.h"
#include "comm/peer_probe.h"

#include <mpi.h>

#include <cstdio>
#include <cstdlib>

namespace paratorch::comm {

Watchdog& Watchdog::instance() {
  static Watchdog dog;
  return dog;
}

Watchdog::~Watchdog() { shutdown(); }

uint64_t Watchdog::watch(const OpInfo& info, double timeout_s) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!thread_.joinable() && !stopping_) thread_ = std::thread([this] { run(); });
  auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(timeout_s));
  uint64_t ticket = next_ticket_++;
  entries_.emplace(ticket, Entry{info, timeout_s, deadline});
  if (!info.is_p2p()) progress_[info.group_key] = Progress{static_cast<int64_t>(info.sequence), info.op, true};
  return ticket;
}

void Watchdog::unwatch(uint64_t ticket) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = entries_.find(ticket);
  if (it == entries_.end()) return;
  const OpInfo& info = it->second.info;
  if (!info.is_p2p()) {
    Progress& p = progress_[info.group_key];
    if (p.sequence == static_cast<int64_t>(info.sequence)) p.in_flight = false;
  }
  entries_.erase(it);
}

Watchdog::Progress Watchdog::progress_of(uint64_t group_key) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = progress_.find(group_key);
  return it == progress_.end() ? Progress{} : it->second;
}

std::string Watchdog::waiting_in() {
  std::lock_guard<std::mutex> lock(mutex_);
  return entries_.empty() ? std::string() : entries_.begin()->second.info.describe();
}

bool Watchdog::oldest_wait(OpInfo* info, double* waited_s) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (entries_.empty()) return false;
  const Entry& e = entries_.begin()->second;
  *info = e.info;
  *waited_s = e.timeout_s - std::chrono::duration<double>(e.deadline - Clock::now()).count();
  return true;
}

void Watchdog::set_expiry_handler(ExpiryHandler handler) {
  std::lock_guard<std::mutex> lock(mutex_);
  handler_ = std::move(handler);
}

void Watchdog::shutdown() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> lock(mutex_);
  stopping_ = false;  // a later watch() may start it again
}

void Watchdog::run() {
  // A coarse tick keeps this thread off the cores: deadlines are seconds, so
  // being late by a tick does not matter.
  const auto tick = std::chrono::milliseconds(200);
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    wake_.wait_for(lock, tick);
    auto now = Clock::now();
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
      if (it->second.deadline > now) continue;
      Entry expired = it->second;
      entries_.erase(it);
      ExpiryHandler handler = handler_;
      lock.unlock();
      if (handler) handler(expired.info, expired.timeout_s);
      else abort_job_on_deadline(expired.info, expired.timeout_s);
      lock.lock();
      break;  // the map changed; rescan next tick
    }
  }
}

namespace {

/// 2, 0.5, 300: as a person writes them.
std::string format_seconds(double s) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", s);
  return text;
}

/// The one line a rank prints when a fault ends it:
/// "paratorch: rank R (host H): WHAT PEERS Flight records: DIR (paratorch inspect DIR).TAIL"
void print_fault_line(int world_rank, const std::string& what, const std::string& peers, const std::string& record,
                      const std::string& tail) {
  const std::string host = host_of(world_rank);
  const std::string dir = record.empty() ? "" : record.substr(0, record.rfind('/'));
  std::string line = "paratorch: rank " + std::to_string(world_rank) + (host.empty() ? "" : " (host " + host + ")") +
                     ": " + what + " " + peers;
  if (!dir.empty()) line += " Flight records: " + dir + " (paratorch inspect " + dir + ").";
  std::fprintf(stderr, "%s%s\n", line.c_str(), tail.c_str());
  std::fflush(stderr);
}

}  // namespace

void abort_job_on_deadline(const OpInfo& info, double timeout_s) {
  // Whatever MPI does from here (a probe or MPI_Abort stuck on a broken
  // peer), this process ends: the deadline must end the job.
  std::thread([] {
    std::this_thread::sleep_for(std::chrono::duration<double>(kProbeDeadlineS + 10.0));
    std::fprintf(stderr, "paratorch: MPI_Abort did not end this rank; exiting.\n");
    std::_Exit(1);
  }).detach();
  const std::string what = "deadline passed: " + info.describe() + " did not complete within " +
                           format_seconds(timeout_s) + " s";
  // This rank's record first; each rank the probe asks writes its own.
  const std::string record = FlightRecorder::instance().dump(what);
  const std::string peers = PeerProbe::instance().diagnose(info, kProbeDeadlineS);
  print_fault_line(info.world_rank, what + " (CommOptions::timeout_s).", peers, record, " Ending the job.");
  MPI_Abort(MPI_COMM_WORLD, 1);
  std::_Exit(1);
}

void report_termination() {
  // The op this rank waits in; else (computing) the last one it finished,
  // so the peers it was working with are still asked who is gone.
  OpInfo info;
  double waited_s = 0;
  std::string what = "ended by SIGTERM (the launcher is ending the job) ";
  if (Watchdog::instance().oldest_wait(&info, &waited_s)) {
    char waited[32];
    std::snprintf(waited, sizeof waited, "%.1f", waited_s);
    what += "after waiting " + std::string(waited) + " s in " + info.describe();
  } else {
    const auto recent = FlightRecorder::instance().snapshot();
    if (recent.empty()) {
      FlightRecorder::instance().dump(what + "before any collective or transfer");
      return;
    }
    info = recent.back().info;
    what += "while computing, after " + info.describe();
    info.sequence += 1;  // the peers are judged on the next op of the group
  }
  if (std::getenv("PARATORCH_ERROR_DIR")) {  // the supervising launcher speaks for the job
    FlightRecorder::instance().dump(what);
    return;
  }
  // The launcher's SIGKILL follows SIGTERM within a second (Open MPI's
  // odls_base_sigkill_timeout): write the record while the peers are asked,
  // not before, so a busy host still gets its line out.
  std::string record;
  std::thread writer([&] { record = FlightRecorder::instance().dump(what); });
  const std::string peers = PeerProbe::instance().diagnose(info, kSigtermProbeS);
  writer.join();
  print_fault_line(info.world_rank, what + ".", peers, record, "");
}

}  // namespace paratorch::comm
