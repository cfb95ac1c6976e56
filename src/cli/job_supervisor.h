// src/cli/job_supervisor.h — `--nproc N` runs mpirun as a child and speaks
// for the job: each failure is printed once, as one line, with the job's exit
// code (2 usage, 1 runtime).
//
// Left to itself, every rank prints the same failure (a bad checkpoint is bad
// on every rank) and mpirun then adds its own banner ("Primary job terminated
// normally, but 1 process returned a non-zero exit code", "mpirun detected
// that one or more processes exited with non-zero status", the MPI_ABORT
// box). So the launcher starts `mpirun -q` (no banner; its exit code is still
// the first failing rank's) with PARATORCH_ERROR_DIR set: a failing rank
// writes its message there (report_failure, from main) instead of to stderr,
// and when mpirun returns the launcher prints each distinct message once.
// A job that failed without any rank saying why (a crash, a signal, mpirun
// unable to start) gets a line saying so.
//
// Under your own mpirun nothing is redirected: rank 0 prints usage errors,
// every failing rank prints its runtime failure.
#pragma once
#include <string>
#include <vector>

namespace paratorch::cli {

/// Runs `mpirun_cmd` (argv, mpirun first) as a child, forwarding signals sent
/// to this process, prints the ranks' failures once, and returns the job's
/// exit code. required_ranks > 0: a job that survives lost ranks
/// (survivable_launch.h) — its code is that of ranks [0, required_ranks).
int run_supervised_job(const std::vector<std::string>& mpirun_cmd, int required_ranks);

/// Reports rank `rank`'s failure: into the launcher's folder when it collects
/// them, else on stderr (usage errors from rank 0 only, since every rank sees
/// the same one). `code`: 2 usage, 1 runtime.
void report_failure(int rank, int code, const std::string& message);

/// The one line a failure prints as: a usage error as it is, a runtime
/// failure naming its rank(s): "paratorch: rank 1: ..." / "paratorch: ranks 0, 1: ...".
std::string failure_line(int code, const std::string& message, const std::vector<int>& ranks);

}  // namespace paratorch::cli
