// src/train/checkpoint.cpp — see checkpoint.h.
#include "train/checkpoint.h"

#include <paratorch/errors.h>

#include <map>
#include <sstream>

namespace paratorch::train {
using checkpoints::Checkpoint;
namespace {

// The lines of one section ("[model]") of a config's TOML, key by key.
std::map<std::string, std::string> section_keys(const std::string& toml_text, const std::string& section) {
  std::map<std::string, std::string> keys;
  std::istringstream in(toml_text);
  std::string line;
  bool in_model = false;
  while (std::getline(in, line)) {
    if (!line.empty() && line[0] == '[') in_model = line == section;
    const auto eq = line.find(" = ");
    if (in_model && eq != std::string::npos) keys[line.substr(0, eq)] = line.substr(eq + 3);
  }
  return keys;
}

}  // namespace

Checkpoint read_checkpoint_to_resume(const std::string& path, const formats::ShardPlan& plan) {
  try {
    return checkpoints::read_checkpoint(path, plan);
  } catch (const RuntimeFailure& e) {
    throw RuntimeFailure(std::string(e.what()) + " (pass another checkpoint to --resume, or start without it)");
  }
}

void require_compatible(const Checkpoint& ckpt, const Config& config) {
  const auto theirs = section_keys(ckpt.config_toml, "[model]"), ours = section_keys(to_toml(config), "[model]");
  std::string differences;
  for (const auto& [key, value] : ours) {
    auto it = theirs.find(key);
    const std::string other = it == theirs.end() ? "(absent)" : it->second;
    if (other != value) differences += (differences.empty() ? "" : ", ") + key + " = " + other + " there, " + value + " here";
  }
  if (!differences.empty())
    throw UsageError("paratorch: the checkpoint was written for another model ([model] " + differences +
                     "); resume with the config that wrote it (its config.toml)");
  // The optimizer's state has one set of kinds (adamw: exp_avg, exp_avg_sq;
  // sgd: momentum_buffer): another optimizer cannot continue from it.
  const auto their_optim = section_keys(ckpt.config_toml, "[optim]"), our_optim = section_keys(to_toml(config), "[optim]");
  auto name_of = [](const std::map<std::string, std::string>& keys) {
    auto it = keys.find("name");
    return it == keys.end() ? std::string("(absent)") : it->second;
  };
  if (!their_optim.empty() && name_of(their_optim) != name_of(our_optim))
    throw UsageError("paratorch: the checkpoint holds the state of optimizer " + name_of(their_optim) +
                     ", and [optim] name = " + name_of(our_optim) + " here; resume with name = " + name_of(their_optim) +
                     " or start without --resume");
  if (ckpt.step >= config.train.steps)
    throw UsageError("paratorch: the checkpoint is at step " + std::to_string(ckpt.step) + " and [train] steps = " +
                     std::to_string(config.train.steps) + ": nothing left to run; raise train.steps");
}

}  // namespace paratorch::train
