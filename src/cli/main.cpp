// src/cli/main.cpp — the `paratorch` command: dispatch to subcommands and map
// failures to exit codes (2 usage, 1 runtime) with a one-line message.
#include "cli/commands.h"
#include "cli/job_supervisor.h"
#include "cli/startup_policy.h"
#include "cli/survivable_launch.h"
#include "train/engine_options.h"

#include <paratorch/errors.h>
#include <paratorch/flight_recorder.h>

#include <mpi.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

// Processes that compute run with napping idle compute threads (world.h);
// startup_policy.h says which. Like PARATORCH_NAP_IDLE_COMPUTE_THREADS, an ELF
// .preinit_array entry, so it runs before every library's constructors.
__attribute__((section(".preinit_array"), used)) static void (*const paratorch_cli_startup_)(int, char**, char**) =
    &paratorch::cli::nap_idle_threads_where_computing;

namespace {

void print_usage() {
  std::cout << "usage: paratorch <command> [flags]\n\n"
               "commands:\n"
               "  train    train a bundled model from a TOML config\n"
               "  verify   check that a layout reproduces the single-process run\n"
               "  plan     rank every layout of a run on a cluster by predicted throughput\n"
               "  simulate predict one layout's step time, throughput and memory on a cluster\n"
               "  plot     draw several runs' metrics (loss, val_loss, ...) in one chart\n"
               "  inspect  say why a job hung, from the flight records its ranks wrote\n"
               "  checkpoint export  a checkpoint's model as one safetensors file of full tensors\n"
               "  help     show this text\n\n"
               "'paratorch <command> --help' lists a command's flags.\n";
}

/// This process's rank, also before MPI starts or after it ended (from the
/// launcher's environment), so a message meant for rank 0 prints once.
int world_rank() {
  int initialized = 0, finalized = 0, rank = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    return rank;
  }
  for (const char* var : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"})
    if (const char* v = std::getenv(var)) return std::atoi(v);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "help" || args[0] == "--help" || args[0] == "-h") {
    print_usage();
    return args.empty() ? 2 : 0;
  }
  std::string command = args[0];
  args.erase(args.begin());
  int code = 0;
  try {
    if (command == "train") code = paratorch::cli::run_train(argc, argv, args);
    else if (command == "verify") code = paratorch::cli::run_verify(argc, argv, args);
    else if (command == "plan" && std::find(args.begin(), args.end(), "--calibrate") != args.end())
      code = paratorch::cli::run_calibrate(argc, argv, args);
    else if (command == "plan") code = paratorch::cli::run_plan(args);
    else if (command == "simulate") code = paratorch::cli::run_simulate(args);
    else if (command == "plot") code = paratorch::cli::run_plot(args);
    else if (command == "inspect") code = paratorch::cli::run_inspect(args);
    else if (command == "checkpoint") code = paratorch::cli::run_checkpoint(args);
    else
      throw paratorch::UsageError("paratorch: unknown command '" + command +
                                  "'; valid commands: train, verify, plan, simulate, plot, inspect, checkpoint, help");
  } catch (const paratorch::UsageError& e) {
    code = 2;
    // The library names option fields; the user of this command edits config
    // keys (failures below name what to change the same way).
    paratorch::cli::report_failure(world_rank(), code, paratorch::train::in_config_keys(e.what()));
  } catch (const std::exception& e) {
    code = 1;
    // What this rank last did on each group, for `paratorch inspect`.
    std::string what = e.what();
    if (what.rfind("paratorch: ", 0) == 0) what.erase(0, 11);
    paratorch::dump_flight_record("fatal error: " + what);
    paratorch::cli::report_failure(world_rank(), code, paratorch::train::in_config_keys(e.what()));
  }
  paratorch::cli::record_exit_status(code);  // for a launcher that survives lost ranks
  return code;
}
