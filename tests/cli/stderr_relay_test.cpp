// tests/cli/stderr_relay_test.cpp — the launcher's relay of mpirun's stderr
// (src/cli/stderr_relay.h): every line but the skipped finalize's PMIx
// noise comes through, and a process left holding the pipe cannot hold up
// the end of the job.
#include <gtest/gtest.h>

#include "cli/stderr_relay.h"

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

using paratorch::cli::is_skipped_finalize_noise;
using paratorch::cli::StderrRelay;

namespace {

// Runs `child` (its stderr the relay's pipe) to its exit, with this
// process's stderr sent to a file; returns what reached that file and the
// seconds finish() took.
std::pair<std::string, double> relayed(void (*child)(), double drain_s) {
  char path[] = "/tmp/paratorch_relay_test_XXXXXX";
  const int file = mkstemp(path);
  std::fflush(stderr);
  const int saved = dup(STDERR_FILENO);
  double finish_s = 0;
  {
    StderrRelay relay(is_skipped_finalize_noise);
    dup2(file, STDERR_FILENO);
    const pid_t pid = fork();
    if (pid == 0) {
      relay.attach_child();
      child();
      _exit(0);
    }
    relay.start();
    int status = 0;
    waitpid(pid, &status, 0);
    const auto t0 = std::chrono::steady_clock::now();
    relay.finish(drain_s);
    finish_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  dup2(saved, STDERR_FILENO);
  close(saved);
  close(file);
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  std::remove(path);
  return {text.str(), finish_s};
}

void write_text(const char* text) {
  if (::write(STDERR_FILENO, text, std::strlen(text)) < 0) _exit(1);
}

void writes_lines_and_noise() {
  write_text("paratorch: PARATORCH_PS_CRASH: worker rank 3 kills itself\n");
  write_text("[vm:22304] PMIX ERROR: BAD-PARAM in file ../../../src/event/pmix_event_notification.c at line 1033\n");
  write_text("[vm:22304] PMIX ERROR: BAD-PARAM in file ../../../src/server/pmix_server.c at line 77\n");
  write_text("a last line without its newline");
}

// The child exits at once, leaving a process of its own that holds the
// pipe open for 8 s (as an mpirun daemon might).
void leaves_a_process_holding_the_pipe() {
  write_text("before\n");
  if (fork() == 0) {
    for (int fd = 0; fd < 1024; ++fd)  // the test runner's pipes too: it waits for them
      if (fd != STDERR_FILENO) close(fd);
    sleep(8);
    _exit(0);
  }
}

}  // namespace

TEST(StderrRelay, PassesEveryLineButTheSkippedFinalizesNoise) {
  const auto [text, seconds] = relayed(writes_lines_and_noise, 1.0);
  EXPECT_EQ(text,
            "paratorch: PARATORCH_PS_CRASH: worker rank 3 kills itself\n"
            "[vm:22304] PMIX ERROR: BAD-PARAM in file ../../../src/server/pmix_server.c at line 77\n"
            "a last line without its newline\n")
      << "only pmix_event_notification.c's BAD-PARAM is left out";
  EXPECT_LT(seconds, 1.0) << "the pipe's end came with the child's exit";
}

TEST(StderrRelay, AProcessLeftHoldingThePipeDoesNotHoldUpTheEnd) {
  const auto [text, seconds] = relayed(leaves_a_process_holding_the_pipe, 0.3);
  EXPECT_EQ(text, "before\n");
  EXPECT_LT(seconds, 3.0) << "finish waits drain_s, not for every writer";
}
