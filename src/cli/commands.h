// src/cli/commands.h — the paratorch subcommands.
//
// Each takes its arguments (after the subcommand name) and returns the exit
// code. Usage errors are thrown as UsageError and mapped to exit code 2 by main.
#pragma once
#include <string>
#include <vector>

namespace paratorch::cli {

int run_verify(int& argc, char**& argv, const std::vector<std::string>& args);
int run_train(int& argc, char**& argv, const std::vector<std::string>& args);
int run_plan(const std::vector<std::string>& args);
/// `paratorch plan --calibrate` (calibrate_command.cpp).
int run_calibrate(int& argc, char**& argv, const std::vector<std::string>& args);
int run_simulate(const std::vector<std::string>& args);
/// `paratorch plot`: several runs' metrics in one chart (plot_command.cpp).
int run_plot(const std::vector<std::string>& args);
/// `paratorch inspect DIR`: why a job hung, from its flight records.
int run_inspect(const std::vector<std::string>& args);
/// `paratorch checkpoint export DIR FILE`: a checkpoint's model as one file.
int run_checkpoint(const std::vector<std::string>& args);

}  // namespace paratorch::cli
