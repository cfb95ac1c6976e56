// src/cli/startup_policy.h — which `paratorch` processes start with napping
// idle compute threads (world.h). The re-execution that applies them costs a
// second pass of the dynamic loader over libtorch's libraries (startup_env.cpp),
// so only a process that computes pays it:
//   - `train`, `verify` and `plan --calibrate` running here (without --nproc,
//     or as a rank under mpirun/srun) re-execute when a default is missing;
//   - a launcher (--nproc outside mpirun) only validates and starts mpirun; it
//     exports the defaults to the ranks instead (launcher.cpp);
//   - help and the commands that read files or model a cluster never do.
#pragma once

namespace paratorch::cli {

/// True when this invocation computes in this process. It runs from the
/// executable's .preinit_array, before libc has set up `environ`, so it reads
/// the environment from `envp` and allocates nothing.
bool computes_in_this_process(int argc, char** argv, char** envp);

/// The `paratorch` command's .preinit_array entry: start_with_napping_compute_threads
/// where computes_in_this_process.
void nap_idle_threads_where_computing(int argc, char** argv, char** envp);

}  // namespace paratorch::cli
