// src/cli/job_supervisor.cpp — see job_supervisor.h. Owns the mpirun child
// (start, signals, wait) and the ranks' failure reports in its folder.
#include "cli/job_supervisor.h"

#include "cli/stderr_relay.h"
#include "cli/survivable_launch.h"
#include "formats/atomic_file.h"

#include <paratorch/errors.h>

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

namespace paratorch::cli {
namespace {

constexpr const char* kErrorDirVar = "PARATORCH_ERROR_DIR";
pid_t g_supervised_mpirun = -1;

// Ctrl-C reaches mpirun through the terminal's process group already (a
// second SIGINT would make it force-quit); a signal sent to this launcher
// alone (kill PID) is passed on, so mpirun never outlives it.
void forward_sent_signal(int sig, siginfo_t* info, void*) {
  if (g_supervised_mpirun > 0 && info && info->si_code <= 0) kill(g_supervised_mpirun, sig);
}

std::string make_job_dir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "paratorch-job-XXXXXX").string();
  if (!mkdtemp(pattern.data()))
    throw RuntimeFailure(std::string("paratorch: cannot create a temporary folder for the ranks' reports (") +
                         std::strerror(errno) + ")");
  return pattern;
}

[[noreturn]] void exec_mpirun(const std::vector<std::string>& cmd) {
  // SIGKILL of the launcher (a test runner's timeout) cannot be forwarded:
  // have the kernel end mpirun when its parent goes.
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  std::vector<char*> argv;
  for (const auto& s : cmd) argv.push_back(const_cast<char*>(s.c_str()));
  argv.push_back(nullptr);
  execvp(argv[0], argv.data());
  std::fprintf(stderr, "paratorch: could not start mpirun (%s); install OpenMPI (apt-get install openmpi-bin) "
                       "or run under your launcher\n", std::strerror(errno));
  _exit(127);
}

int wait_for(pid_t child) {
  struct sigaction action {};
  action.sa_sigaction = forward_sent_signal;
  action.sa_flags = SA_SIGINFO;
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &action, nullptr);
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

struct Failure {
  int code = 1;
  std::vector<int> ranks;
};

// The reports in `dir`, by message, each with the ranks that sent it.
std::map<std::string, Failure> collect_failures(const std::string& dir) {
  std::map<std::string, Failure> failures;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("error-", 0) != 0 || name.find(".tmp") != std::string::npos) continue;
    std::ifstream in(entry.path());
    int code = 1;
    std::string message;
    if (!(in >> code) || !std::getline(in >> std::ws, message, '\0')) continue;
    while (!message.empty() && message.back() == '\n') message.pop_back();
    Failure& f = failures[message];
    f.code = code;
    f.ranks.push_back(std::atoi(name.c_str() + 6));
  }
  return failures;
}

// Each distinct failure once, lowest rank first.
bool print_failures(const std::string& dir) {
  std::multimap<int, std::string> lines;
  for (auto& [message, f] : collect_failures(dir)) {
    std::sort(f.ranks.begin(), f.ranks.end());
    lines.emplace(f.ranks.front(), failure_line(f.code, message, f.ranks));
  }
  for (const auto& [rank, line] : lines) std::fprintf(stderr, "%s\n", line.c_str());
  return !lines.empty();
}

}  // namespace

std::string failure_line(int code, const std::string& message, const std::vector<int>& ranks) {
  if (code == 2 || ranks.empty()) return message;
  std::string who = ranks.size() == 1 ? "rank " : "ranks ";
  for (size_t i = 0; i < ranks.size(); ++i) who += (i ? ", " : "") + std::to_string(ranks[i]);
  // Library messages already open with "paratorch: ": say it once.
  const std::string prefix = "paratorch: ";
  const bool ours = message.rfind(prefix, 0) == 0;
  return prefix + who + ": " + (ours ? message.substr(prefix.size()) : message);
}

int run_supervised_job(const std::vector<std::string>& mpirun_cmd, int required_ranks) {
  const std::string dir = make_job_dir();
  setenv(kErrorDirVar, dir.c_str(), 1);
  if (required_ranks > 0) setenv(kExitDirVar, dir.c_str(), 1);
  std::fflush(stdout);
  std::fflush(stderr);
  std::optional<StderrRelay> relay;  // a survivable job's ranks skip MPI_Finalize: stderr_relay.h
  if (required_ranks > 0) relay.emplace(is_skipped_finalize_noise);
  g_supervised_mpirun = fork();
  if (g_supervised_mpirun < 0)
    throw RuntimeFailure(std::string("paratorch: fork failed (") + std::strerror(errno) + ")");
  if (g_supervised_mpirun == 0) {
    if (relay) relay->attach_child();
    exec_mpirun(mpirun_cmd);
  }
  if (relay) relay->start();
  int code = wait_for(g_supervised_mpirun);
  if (relay) relay->finish();
  const bool reported = print_failures(dir);
  if (required_ranks > 0) code = std::max(code, required_ranks_code(dir, required_ranks));
  // 1 and 2 are ours: a rank said why (or a deadline's report did, before MPI_Abort).
  if (!reported && code > 2)
    std::fprintf(stderr, "paratorch: the job ended with exit code %d and no rank reported an error: a rank crashed "
                         "or was killed, or mpirun could not start the ranks (run the command under `mpirun` "
                         "yourself, without --nproc, to see mpirun's own report)\n", code);
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
  return code;
}

void report_failure(int rank, int code, const std::string& message) {
  if (const char* dir = std::getenv(kErrorDirVar)) {
    try {
      formats::write_file_atomic(std::string(dir) + "/error-" + std::to_string(rank),
                                 std::to_string(code) + "\n" + message + "\n");
      return;
    } catch (const std::exception&) {
      // The launcher's folder is gone: say it here instead.
    }
  }
  if (code == 2 && rank != 0) return;
  std::fprintf(stderr, "%s\n", failure_line(code, message, {rank}).c_str());
}

}  // namespace paratorch::cli
