// src/cli/stderr_relay.h — passes a child process's stderr on to this
// process's stderr line by line, leaving out the lines a filter names.
//
// The launcher (job_supervisor.h) uses it for jobs that survive lost ranks:
// their ranks skip MPI_Finalize (src/comm/world.cpp), and Open MPI's PMIx
// then logs "PMIX ERROR: BAD-PARAM in file .../pmix_event_notification.c"
// for each rank as it exits, after a run that went well. Those lines say
// nothing about the job, so they are left out; every other line, the
// ranks' own included, comes through as it was written.
//
// Example:
//   StderrRelay relay([](const std::string& line) { return line.find("noise") != std::string::npos; });
//   pid_t child = fork();
//   if (child == 0) { relay.attach_child(); execvp(...); }
//   relay.start();
//   waitpid(child, ...);
//   relay.finish();  // what the child's last writes left in the pipe, then stops
#pragma once
#include <atomic>
#include <functional>
#include <string>
#include <thread>

namespace paratorch::cli {

class StderrRelay {
 public:
  /// `drop(line)` true: the line (without its newline) is left out.
  explicit StderrRelay(std::function<bool(const std::string&)> drop);
  ~StderrRelay();
  StderrRelay(const StderrRelay&) = delete;
  StderrRelay& operator=(const StderrRelay&) = delete;

  /// In the child, before exec: its stderr becomes the relay's pipe.
  void attach_child();
  /// In the parent, after fork: relays on a thread of its own.
  void start();
  /// After the child has exited: relays what is still in the pipe (waiting
  /// at most `drain_s` for processes the child left holding it), then stops.
  void finish(double drain_s = 1.0);

 private:
  void relay();
  void emit(const std::string& line);

  std::function<bool(const std::string&)> drop_;
  int read_fd_ = -1, write_fd_ = -1;
  std::atomic<bool> stopping_{false};
  double drain_s_ = 1.0;
  std::thread thread_;
};

/// The lines a survivable job's skipped MPI_Finalize makes Open MPI's PMIx log.
bool is_skipped_finalize_noise(const std::string& line);

}  // namespace paratorch::cli
