// src/cli/launcher.h — `--nproc N`: start this same command under mpirun.
//
// Outside an MPI launcher, paratorch runs itself as
//   mpirun -np N --bind-to none [--allow-run-as-root] [--oversubscribe] -q paratorch ARGS
// adding what root and more ranks than cores need, so users never type them,
// and stays as the job's supervisor: it prints each rank failure once and
// returns the job's exit code (job_supervisor.h).
// Under mpirun or srun the launcher's ranks are used as they are.
//
// A job whose later ranks may die without ending it (asynchronous parameter
// server workers, docs/async.md) is started with LaunchOptions::required_ranks:
// see survivable_launch.h.
#pragma once
#include <string>
#include <vector>

namespace paratorch::cli {

/// True when this process was started by mpirun/mpiexec/srun (with PMI).
bool under_mpi_launcher();

/// The same, read from `envp`; allocates nothing, so it also serves before
/// libc has set up `environ` (startup_policy.h).
bool under_mpi_launcher(char** envp);

/// Ranks the launcher started (from its environment), or 1.
int launcher_world_size();

struct LaunchOptions {
  /// 0: any rank that exits abnormally ends the job (mpirun's default).
  /// R > 0: only ranks [0, R) are required; a later rank may crash or be
  /// killed and the others carry on (mpirun --enable-recovery). The job's
  /// exit code is then the required ranks' (survivable_launch.h).
  int required_ranks = 0;
};

/// The mpirun command line that runs `args` (this program's arguments after
/// the program name) on `nproc` ranks of this machine.
std::vector<std::string> mpirun_command(int nproc, const std::string& self,
                                        const std::vector<std::string>& args, const LaunchOptions& options = {});

/// Extracts --nproc from a subcommand's args. Outside a launcher it
/// re-executes the command under mpirun (does not return); under a launcher
/// it checks N equals the launched ranks.
void maybe_relaunch(const std::string& command, const std::vector<std::string>& args,
                    const LaunchOptions& options = {});

/// Runs mpirun_command(...) as a supervised child and exits with the job's
/// code (job_supervisor.h). Throws RuntimeFailure when it cannot start.
void relaunch_under_mpirun(int nproc, const std::vector<std::string>& args, const LaunchOptions& options = {});

}  // namespace paratorch::cli
