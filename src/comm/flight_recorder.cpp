// src/comm/flight_recorder.cpp — the ring, its JSON, and the dumps on
// request and on SIGUSR1 (see flight_recorder.h).
#include "comm/flight_recorder.h"

#include "comm/host_table.h"
#include "formats/atomic_file.h"
#include <paratorch/errors.h>
#include <paratorch/flight_recorder.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <thread>
#include <unistd.h>

namespace paratorch {

void FlightRecorderOptions::validate() const {
  if (capacity < 0)
    throw UsageError("paratorch: FlightRecorderOptions::capacity must be >= 0 (0 = record nothing), got " +
                     std::to_string(capacity));
}

std::string dump_flight_record(const std::string& reason) { return comm::FlightRecorder::instance().dump(reason); }

}  // namespace paratorch

namespace paratorch::comm {

const char* flight_state_name(FlightState state) {
  switch (state) {
    case FlightState::kQueued: return "queued";
    case FlightState::kStarted: return "started";
    case FlightState::kDone: return "done";
    case FlightState::kFailed: return "failed";
  }
  return "?";
}

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

FlightRecorder& FlightRecorder::instance() {
  static FlightRecorder recorder;
  return recorder;
}

void FlightRecorder::configure(int capacity, std::string dump_dir) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (static_cast<size_t>(capacity) != ring_.size()) {
    ring_.assign(static_cast<size_t>(capacity), FlightEntry{});
    next_id_ = 0;
  }
  dump_dir_ = std::move(dump_dir);
}

void FlightRecorder::set_identity(int world_rank, int world_size, std::string host) {
  std::lock_guard<std::mutex> lock(mutex_);
  world_rank_ = world_rank;
  world_size_ = world_size;
  host_ = std::move(host);
}

uint64_t FlightRecorder::record(const OpInfo& info, FlightState state) {
  const int64_t now = now_us();
  std::lock_guard<std::mutex> lock(mutex_);
  if (ring_.empty()) return kNone;
  FlightEntry& e = ring_[next_id_ % ring_.size()];
  e = FlightEntry{};
  e.id = next_id_;
  e.info = info;
  e.state = state;
  if (state == FlightState::kQueued) e.queued_us = now;
  else e.started_us = now;
  return next_id_++;
}

void FlightRecorder::mark(uint64_t id, FlightState state) {
  if (id == kNone) return;
  const int64_t now = now_us();
  std::lock_guard<std::mutex> lock(mutex_);
  if (ring_.empty()) return;
  FlightEntry& e = ring_[id % ring_.size()];
  if (e.id != id || id >= next_id_) return;  // overwritten since
  e.state = state;
  if (state == FlightState::kStarted) e.started_us = now;
  else if (state == FlightState::kDone || state == FlightState::kFailed) e.done_us = now;
}

std::vector<FlightEntry> FlightRecorder::snapshot() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<FlightEntry> out;
  if (ring_.empty()) return out;
  const uint64_t n = ring_.size();
  const uint64_t first = next_id_ > n ? next_id_ - n : 0;
  for (uint64_t id = first; id < next_id_; ++id) out.push_back(ring_[id % n]);
  return out;
}

namespace {

nlohmann::json entry_json(const FlightEntry& e) {
  const OpInfo& i = e.info;
  nlohmann::json j;
  j["id"] = e.id;
  j["op"] = i.op;
  j["seq"] = i.sequence;
  j["group"] = i.group;
  j["group_key"] = std::to_string(i.group_key);
  j["group_ranks"] = i.group_world_ranks;
  j["group_rank"] = i.group_rank;
  j["peer"] = i.peer;
  j["dtype"] = i.dtype;
  j["shape"] = i.shape;
  j["bytes"] = i.bytes;
  j["state"] = flight_state_name(e.state);
  j["queued_us"] = e.queued_us;
  j["started_us"] = e.started_us;
  j["done_us"] = e.done_us;
  return j;
}

}  // namespace

std::string FlightRecorder::to_json(const std::string& reason) const {
  const std::vector<FlightEntry> entries = snapshot();
  nlohmann::json j;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    j["format"] = "paratorch-flight-record";
    j["version"] = 1;
    j["rank"] = world_rank_;
    j["world_size"] = world_size_;
    j["host"] = host_;
    j["capacity"] = ring_.size();
    j["recorded"] = next_id_;
  }
  j["pid"] = static_cast<int64_t>(getpid());
  j["reason"] = reason;
  j["dumped_us"] = now_us();
  j["entries"] = nlohmann::json::array();
  for (const FlightEntry& e : entries) j["entries"].push_back(entry_json(e));
  // Names and messages are the program's own, but a reason may carry any
  // byte: replace what is not UTF-8 rather than fail the dump.
  return j.dump(1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

std::string FlightRecorder::dump(const std::string& reason) noexcept {
  std::string dir;
  int rank = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    dir = dump_dir_;
    rank = world_rank_;
  }
  if (dir.empty()) return "";
  const std::string path = dir + "/rank-" + std::to_string(rank) + ".json";
  try {
    const std::string json = to_json(reason);
    std::lock_guard<std::mutex> writing(dump_mutex_);
    std::filesystem::create_directories(dir);
    formats::write_file_atomic(path, json);
    return path;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "paratorch: rank %d: could not write the flight record %s: %s\n", rank, path.c_str(),
                 e.what());
    return "";
  }
}

FlightScope::~FlightScope() {
  const bool failed = std::uncaught_exceptions() > uncaught_;
  FlightRecorder::instance().mark(id_, failed ? FlightState::kFailed : FlightState::kDone);
}

// SIGUSR1 and SIGTERM: a handler may only do async-signal-safe things, so it
// writes one byte into a pipe; a thread blocked on the pipe's other end acts.
namespace {

int signal_pipe[2] = {-1, -1};
std::thread signal_thread;
std::mutex signal_mutex;
std::function<void()> sigterm_action;
bool usr1_installed = false;

void on_signal(int sig) {
  const int saved = errno;
  const char byte = sig == SIGTERM ? 't' : 'd';
  if (signal_pipe[1] >= 0) (void)!write(signal_pipe[1], &byte, 1);
  errno = saved;
}

void signal_loop(int read_end) {
  char byte = 0;
  for (;;) {
    const ssize_t n = read(read_end, &byte, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || byte == 'q') return;
    if (byte == 't') {
      if (sigterm_action) sigterm_action();
      // End as SIGTERM would have: the launcher reads the signal.
      signal(SIGTERM, SIG_DFL);
      raise(SIGTERM);
      return;
    }
    const std::string path = FlightRecorder::instance().dump("SIGUSR1");
    if (!path.empty()) std::fprintf(stderr, "paratorch: flight record written to %s (SIGUSR1)\n", path.c_str());
  }
}

void install(int sig) {
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(sig, &action, nullptr);
}

}  // namespace

void start_dump_on_signal(bool on_sigusr1, std::function<void()> on_sigterm) {
  if (!on_sigusr1 && !on_sigterm) return;
  std::lock_guard<std::mutex> lock(signal_mutex);
  if (signal_thread.joinable()) return;
  if (pipe(signal_pipe) != 0) return;
  sigterm_action = std::move(on_sigterm);
  signal_thread = std::thread(signal_loop, signal_pipe[0]);
  usr1_installed = on_sigusr1;
  if (usr1_installed) install(SIGUSR1);
  if (sigterm_action) install(SIGTERM);
}

void stop_dump_on_signal() {
  std::lock_guard<std::mutex> lock(signal_mutex);
  if (!signal_thread.joinable()) return;
  if (usr1_installed) signal(SIGUSR1, SIG_DFL);
  if (sigterm_action) signal(SIGTERM, SIG_DFL);
  const char quit = 'q';
  (void)!write(signal_pipe[1], &quit, 1);
  signal_thread.join();
  close(signal_pipe[0]);
  close(signal_pipe[1]);
  signal_pipe[0] = signal_pipe[1] = -1;
  sigterm_action = nullptr;
}

}  // namespace paratorch::comm
