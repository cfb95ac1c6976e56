// src/cli/checkpoint_command.cpp — `paratorch checkpoint export DIR FILE`: the
// whole model of a checkpoint (either format, any layout that wrote it) as
// one safetensors file of full tensors under the model's names (nanoGPT's
// for gpt), for Python: safetensors.torch.load_file(FILE).
#include "cli/commands.h"
#include "formats/safetensors.h"
#include "formats/sharded_checkpoint.h"
#include "checkpoint/step_folder.h"

#include <paratorch/errors.h>

#include <cstdio>
#include <filesystem>
#include <iostream>

namespace paratorch::cli {
namespace {

constexpr const char* kUsage =
    "usage: paratorch checkpoint export DIR FILE\n\n"
    "Writes the model of the checkpoint DIR (a step folder, a checkpoints folder or a\n"
    "run's out_dir: the last two follow `latest`) as one safetensors file of full\n"
    "tensors under the model's names, whatever layout wrote it. Optimizer state is\n"
    "left out. Reference: docs/checkpoints.md\n";

// The model's whole tensors: a sharded folder reads only the model's pieces.
std::map<std::string, torch::Tensor> model_tensors(const std::string& dir, int64_t* step, std::string* layout) {
  if (std::filesystem::exists(std::filesystem::path(dir) / formats::kIndexFile)) {
    std::map<std::string, torch::Tensor> out;
    try {
      formats::ShardedReader reader(dir);
      *step = reader.index().step;
      *layout = reader.index().layout;
      for (const auto& name : reader.names("model")) out[name] = reader.whole("model", name);
    } catch (const RuntimeFailure& e) {
      std::string problem = e.what();
      if (problem.rfind("paratorch: ", 0) == 0) problem = problem.substr(11);
      throw RuntimeFailure("paratorch checkpoint export: " + problem);
    }
    return out;
  }
  checkpoints::Checkpoint ckpt = checkpoints::read_checkpoint(dir);
  *step = ckpt.step;
  *layout = ckpt.layout;
  return ckpt.model;
}

}  // namespace

int run_checkpoint(const std::vector<std::string>& args) {
  if (args.size() == 1 && (args[0] == "--help" || args[0] == "-h")) {
    std::cout << kUsage;
    return 0;
  }
  if (args.size() != 3 || args[0] != "export")
    throw UsageError("paratorch checkpoint: give 'export DIR FILE', e.g. 'paratorch checkpoint export runs/a "
                     "model.safetensors' (see --help)");
  const std::string dir = checkpoints::resolve_step_folder(args[1]);
  if (!std::filesystem::is_directory(dir))
    throw UsageError("paratorch checkpoint export: no checkpoint folder " + args[1] +
                     " (give a step folder, a checkpoints folder or a run's out_dir)");
  int64_t step = 0;
  std::string layout;
  const auto model = model_tensors(dir, &step, &layout);
  formats::write_safetensors(args[2], model, {{"format", "pt"}});
  int64_t elements = 0;
  for (const auto& [name, t] : model) elements += t.numel();
  std::printf("checkpoint export: %zu tensors, %lld parameters, step %lld (written by layout %s) -> %s\n",
              model.size(), static_cast<long long>(elements), static_cast<long long>(step), layout.c_str(),
              args[2].c_str());
  return 0;
}

}  // namespace paratorch::cli
