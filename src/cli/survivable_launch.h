// src/cli/survivable_launch.h — a job whose later ranks may die without
// ending it (asynchronous parameter-server workers, docs/async.md).
//
// Open MPI's mpirun (4.x) ends the whole job when any rank exits non-zero or
// on a signal. `mpirun --enable-recovery` lets the others run on — but then
// mpirun's own exit status is 0 whatever happened. So the supervising
// launcher (job_supervisor.h) also sets PARATORCH_EXIT_DIR; every rank writes
// its exit code there as it leaves (record_exit_status, from main), and when
// mpirun returns the job's code is the worst of the REQUIRED ranks' [0, R): a
// required rank with no file died (killed, crashed, or ended by a deadline's
// MPI_Abort), which fails the job with a line naming it. The other ranks'
// codes do not count: the application reports them (the ps summary names
// every lost worker).
//
// Under your own mpirun, pass --enable-recovery yourself to get the same
// survival; the exit code is then mpirun's (0), so read the summary line.
#pragma once
#include <string>

namespace paratorch::cli {

/// Set for a job that survives lost ranks: where ranks record exit codes
/// (World also skips MPI_Finalize under it, see src/comm/world.cpp).
inline constexpr const char* kExitDirVar = "PARATORCH_EXIT_DIR";

/// The job's exit code from the codes ranks [0, required_ranks) recorded in
/// `dir`; prints a line for each required rank that recorded none.
int required_ranks_code(const std::string& dir, int required_ranks);

/// Writes this rank's exit code for required_ranks_code (a no-op when the
/// launcher did not ask: PARATORCH_EXIT_DIR unset).
void record_exit_status(int code);

}  // namespace paratorch::cli
