// src/cli/launcher.cpp — see launcher.h.
#include "cli/launcher.h"

#include "cli/job_supervisor.h"
#include "comm/startup_env.h"

#include <paratorch/errors.h>
#include <paratorch/world.h>

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace paratorch::cli {

bool under_mpi_launcher(char** envp) {
  for (size_t i = 0; envp && envp[i]; ++i)
    for (const char* var : {"OMPI_COMM_WORLD_SIZE=", "PMIX_RANK=", "PMI_RANK=", "PMI_SIZE="})
      if (std::strncmp(envp[i], var, std::strlen(var)) == 0) return true;
  return false;
}

bool under_mpi_launcher() { return under_mpi_launcher(environ); }

int launcher_world_size() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS"})
    if (const char* v = std::getenv(var)) return std::max(1, std::atoi(v));
  return 1;
}

std::vector<std::string> mpirun_command(int nproc, const std::string& self,
                                        const std::vector<std::string>& args, const LaunchOptions& options) {
  std::vector<std::string> cmd = {"mpirun", "-np", std::to_string(nproc),
                                  // Let the OS place torch's threads; binding each
                                  // rank to one core would serialize them.
                                  "--bind-to", "none"};
  if (geteuid() == 0) cmd.push_back("--allow-run-as-root");
  if (nproc > available_cores()) cmd.push_back("--oversubscribe");
  // Open MPI 4.x: without it, one rank's crash or non-zero exit kills the job.
  if (options.required_ranks > 0) cmd.push_back("--enable-recovery");
  // No banner after a rank fails: the supervising launcher prints the ranks'
  // own messages once (job_supervisor.h); the exit code is unchanged.
  cmd.push_back("-q");
  cmd.push_back(self);
  cmd.insert(cmd.end(), args.begin(), args.end());
  return cmd;
}

void relaunch_under_mpirun(int nproc, const std::vector<std::string>& args, const LaunchOptions& options) {
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) throw RuntimeFailure("paratorch: cannot find its own executable (/proc/self/exe)");
  self[n] = '\0';
  const auto cmd = mpirun_command(nproc, self, args, options);
  // Ranks see mpirun's pseudo-terminal, not the user's stdout: tell them
  // which it is, for the progress line (report/progress.cpp).
  setenv("PARATORCH_STDOUT_TTY", isatty(STDOUT_FILENO) == 1 ? "1" : "0", 1);
  // This process did not re-execute (startup_policy.h); its ranks start with
  // the napping defaults instead of each re-executing.
  export_napping_defaults();
  std::exit(run_supervised_job(cmd, options.required_ranks));
}

void maybe_relaunch(const std::string& command, const std::vector<std::string>& args, const LaunchOptions& options) {
  int nproc = 0;
  std::vector<std::string> rest;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i], value;
    if (a == "--nproc" && i + 1 < args.size()) value = args[++i];
    else if (a.rfind("--nproc=", 0) == 0) value = a.substr(8);
    else { rest.push_back(a); continue; }
    try { nproc = std::stoi(value); } catch (...) { nproc = 0; }
    if (nproc < 1) throw UsageError("paratorch " + command + ": --nproc needs a positive integer, got '" + value + "'");
  }
  if (nproc == 0) return;
  if (under_mpi_launcher()) {
    if (nproc != launcher_world_size())
      throw UsageError("paratorch " + command + ": --nproc " + std::to_string(nproc) +
                       " but the launcher started " + std::to_string(launcher_world_size()) +
                       " ranks; drop --nproc under mpirun/srun");
    return;
  }
  rest.insert(rest.begin(), command);
  relaunch_under_mpirun(nproc, rest, options);
}

}  // namespace paratorch::cli
