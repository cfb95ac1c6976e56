// src/cli/stderr_relay.cpp — see stderr_relay.h.
#include "cli/stderr_relay.h"

#include <paratorch/errors.h>

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace paratorch::cli {
namespace {

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

void write_all(int fd, const char* data, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, data, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;  // stderr is gone: nothing to tell
    data += w, n -= static_cast<size_t>(w);
  }
}

}  // namespace

StderrRelay::StderrRelay(std::function<bool(const std::string&)> drop) : drop_(std::move(drop)) {
  int fds[2];
  if (pipe(fds) != 0)
    throw RuntimeFailure(std::string("paratorch: cannot create a pipe for mpirun's messages (") + std::strerror(errno) +
                         ")");
  read_fd_ = fds[0], write_fd_ = fds[1];
}

StderrRelay::~StderrRelay() {
  finish(0);
  if (write_fd_ >= 0) close(write_fd_);
  if (read_fd_ >= 0) close(read_fd_);
}

void StderrRelay::attach_child() {
  dup2(write_fd_, STDERR_FILENO);
  close(write_fd_);
  close(read_fd_);
}

void StderrRelay::start() {
  close(write_fd_);  // the child holds the only write end: EOF when it (and what it started) is done
  write_fd_ = -1;
  thread_ = std::thread([this] { relay(); });
}

void StderrRelay::finish(double drain_s) {
  if (!thread_.joinable()) return;
  drain_s_ = drain_s;
  stopping_ = true;
  thread_.join();
}

void StderrRelay::relay() {
  std::string pending;
  char buf[4096];
  double deadline = 0;
  while (true) {
    if (stopping_ && deadline == 0) deadline = now_s() + drain_s_;
    if (deadline > 0 && now_s() > deadline) break;
    pollfd p{read_fd_, POLLIN, 0};
    const int ready = poll(&p, 1, 100);
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    const ssize_t n = ::read(read_fd_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // EOF: every writer is gone
    pending.append(buf, static_cast<size_t>(n));
    for (size_t end; (end = pending.find('\n')) != std::string::npos;) {
      emit(pending.substr(0, end));
      pending.erase(0, end + 1);
    }
  }
  if (!pending.empty()) emit(pending);
}

void StderrRelay::emit(const std::string& line) {
  if (drop_ && drop_(line)) return;
  const std::string out = line + "\n";
  write_all(STDERR_FILENO, out.data(), out.size());
}

bool is_skipped_finalize_noise(const std::string& line) {
  return line.find("PMIX ERROR: BAD-PARAM") != std::string::npos &&
         line.find("pmix_event_notification.c") != std::string::npos;
}

}  // namespace paratorch::cli
