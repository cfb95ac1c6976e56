// src/checkpoint/step_folder.cpp — see step_folder.h.
#include "checkpoint/step_folder.h"

#include "formats/atomic_file.h"
#include "formats/safetensors.h"
#include "formats/sharded_checkpoint.h"
#include "parallel/async/shard_plan.h"
#include "checkpoint/sharded_folder.h"
#include <paratorch/compat.h>
#include <paratorch/errors.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <unistd.h>

namespace paratorch::checkpoints {
namespace fs = std::filesystem;
namespace {

constexpr const char* kFormat = "paratorch-checkpoint";
constexpr int kVersion = 1;
const char* const kFiles[] = {"model.safetensors", "optimizer.safetensors", "config.toml"};

}  // namespace

std::string step_folder_name(int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "step-%06" PRId64, step);
  return name;
}

namespace {

RuntimeFailure bad_checkpoint(const std::string& dir, const std::string& problem) {
  return RuntimeFailure("paratorch: checkpoint " + dir + ": " + problem);
}

// Removes all but the newest kCheckpointsKept step folders.
void prune_old_checkpoints(const fs::path& root) {
  std::vector<fs::path> steps;
  for (const auto& entry : fs::directory_iterator(root)) {
    const auto name = entry.path().filename().string();
    if (entry.is_directory() && name.rfind("step-", 0) == 0 && name.find(".tmp") == std::string::npos)
      steps.push_back(entry.path());
  }
  std::sort(steps.begin(), steps.end());
  for (size_t i = 0; i + kCheckpointsKept < steps.size(); ++i) fs::remove_all(steps[i]);
}

}  // namespace

std::string fnv1a64_hex(const std::string& bytes) {
  return formats::hex64(formats::fnv1a64(bytes.data(), bytes.size()));
}

namespace {

// The step's files, manifest last: a folder without one was never finished.
void write_step_files(const fs::path& dir, const Checkpoint& ckpt) {
  const std::map<std::string, std::string> contents = {
      {"model.safetensors", formats::safetensors_bytes(ckpt.model, {{"format", "pt"}})},
      {"optimizer.safetensors", formats::safetensors_bytes(ckpt.optimizer)},
      {"config.toml", ckpt.config_toml}};
  nlohmann::json manifest = {
      {"format", kFormat},     {"version", kVersion},           {"step", ckpt.step},
      {"layout", ckpt.layout}, {"world_size", ckpt.world_size}, {"libtorch", compat::torch_version()}};
  for (const auto& [name, bytes] : contents) {
    formats::write_file_atomic((dir / name).string(), bytes);
    manifest["files"][name] = {{"bytes", bytes.size()}, {"fnv1a64", fnv1a64_hex(bytes)}};
  }
  formats::write_file_atomic((dir / "manifest.json").string(), manifest.dump(2) + "\n");
  formats::sync_directory(dir.string());
}

// Renames the finished `tmp_dir` to `final_dir`; a folder already there (a
// re-run replacing this step) is moved aside first and put back if the
// rename fails.
void swap_into_place(const fs::path& tmp_dir, const fs::path& final_dir, const fs::path& old_dir) {
  std::error_code ec;
  if (fs::exists(final_dir)) fs::rename(final_dir, old_dir, ec);
  if (!ec) fs::rename(tmp_dir, final_dir, ec);
  if (ec) {
    if (fs::exists(old_dir) && !fs::exists(final_dir)) fs::rename(old_dir, final_dir, ec);
    throw RuntimeFailure("paratorch: cannot rename checkpoint folder " + tmp_dir.string() + " to " +
                         final_dir.string() + ": " + ec.message());
  }
}

}  // namespace

void commit_step_folder(const std::string& root, const std::string& tmp_dir, int64_t step) {
  const fs::path root_path(root), final_dir = root_path / step_folder_name(step);
  const fs::path old_dir = root_path / (step_folder_name(step) + ".tmp-old-" + std::to_string(::getpid()));
  std::error_code ec;
  swap_into_place(tmp_dir, final_dir, old_dir);
  formats::sync_directory(root_path.string());
  formats::write_file_atomic((root_path / "latest").string(), final_dir.filename().string() + "\n");
  fs::remove_all(old_dir, ec);
  prune_old_checkpoints(root_path);
}

std::string write_checkpoint(const std::string& root, const Checkpoint& ckpt) {
  const fs::path root_path(root), final_dir = root_path / step_folder_name(ckpt.step);
  const fs::path tmp_dir = root_path / (step_folder_name(ckpt.step) + ".tmp-" + std::to_string(::getpid()));
  std::error_code ec;
  fs::create_directories(root_path, ec);
  fs::remove_all(tmp_dir, ec);
  if (!fs::create_directories(tmp_dir, ec) && ec)
    throw RuntimeFailure("paratorch: cannot create checkpoint folder " + tmp_dir.string() + ": " + ec.message());
  try {
    write_step_files(tmp_dir, ckpt);
    commit_step_folder(root, tmp_dir.string(), ckpt.step);
  } catch (...) {
    // A failed write (a full disk) leaves nothing behind: a half folder
    // would hold the space the next checkpoint needs, and never be pruned.
    fs::remove_all(tmp_dir, ec);
    throw;
  }
  return final_dir.string();
}

std::string resolve_step_folder(const std::string& path) {
  fs::path dir(path);
  // A run's out_dir or its checkpoints folder: follow `latest`.
  if (fs::exists(dir / "checkpoints" / "latest")) dir = dir / "checkpoints";
  if (fs::exists(dir / "latest") && !fs::exists(dir / "manifest.json") && !fs::exists(dir / formats::kIndexFile)) {
    std::string name = formats::read_file_bytes((dir / "latest").string());
    name.erase(name.find_last_not_of(" \n\r\t") + 1);
    dir = dir / name;
  }
  return dir.string();
}

namespace {

// The server-K folders, in K order, that a parameter-server run with
// staleness != 0 writes under its out_dir/checkpoints (or `path` itself); none
// when `path` holds no such run.
std::vector<fs::path> server_folders(const std::string& path) {
  for (const fs::path& base : {fs::path(path) / "checkpoints", fs::path(path)}) {
    std::vector<fs::path> out;
    while (fs::exists(base / ("server-" + std::to_string(out.size()))))
      out.push_back(base / ("server-" + std::to_string(out.size())));
    if (!out.empty()) return out;
  }
  return {};
}

// The servers' pieces joined into one checkpoint of whole tensors by
// parameter name, as every other layout writes: any layout (another server
// count included) resumes from it. The servers checkpoint a few updates
// apart, so its step is the oldest server's; the optimizer's step count and
// the config are server 0's.
Checkpoint join_server_checkpoints(const std::vector<fs::path>& folders) {
  Checkpoint out;
  std::map<std::string, torch::Tensor> model, optimizer;
  for (size_t k = 0; k < folders.size(); ++k) {
    Checkpoint part = read_checkpoint(folders[k].string());
    if (k == 0) {
      out.step = part.step, out.config_toml = part.config_toml, out.layout = part.layout;
      int servers = 0, workers = 0;  // each server wrote alone: the job's size is in its layout
      const bool named = std::sscanf(part.layout.c_str(), "ps servers=%d workers=%d", &servers, &workers) == 2;
      out.world_size = named ? servers + workers : part.world_size;
    }
    out.step = std::min(out.step, part.step);
    model.insert(part.model.begin(), part.model.end());
    if (k > 0) part.optimizer.erase("step");
    optimizer.insert(part.optimizer.begin(), part.optimizer.end());
  }
  try {
    out.model = async::whole_from_pieces(model);
    out.optimizer = async::whole_from_pieces(optimizer);
  } catch (const RuntimeFailure& e) {
    const std::string what = e.what(), prefix = "paratorch: ";
    throw bad_checkpoint(folders.front().parent_path().string(),
                         what.compare(0, prefix.size(), prefix) == 0 ? what.substr(prefix.size()) : what);
  }
  return out;
}

bool is_checkpoint_folder(const fs::path& dir) {
  return fs::exists(dir / formats::kIndexFile) || fs::exists(dir / "manifest.json");
}

// Where one out_dir holds both a step folder and server folders (a ps run
// after a sync one in the same folder, or the reverse), the one written
// last is the run to resume.
bool servers_written_last(const std::vector<fs::path>& servers, const fs::path& step_folder) {
  std::error_code ours, theirs;
  const auto servers_time = fs::last_write_time(servers.front() / "latest", ours);
  const auto step_time = fs::last_write_time(step_folder, theirs);
  return !ours && (theirs || servers_time > step_time);
}

}  // namespace

Checkpoint read_checkpoint(const std::string& path, const formats::ShardPlan& plan) {
  const fs::path dir(resolve_step_folder(path));
  const std::string where = dir.string();
  if (const auto servers = server_folders(path); !servers.empty())
    if (!is_checkpoint_folder(dir) || servers_written_last(servers, dir)) return join_server_checkpoints(servers);
  if (!fs::is_directory(dir)) throw bad_checkpoint(where, "no such folder");
  if (fs::exists(dir / formats::kIndexFile)) return read_sharded_checkpoint(where, plan);
  if (!fs::exists(dir / "manifest.json"))
    throw bad_checkpoint(
        where, "no manifest.json or index.json (not a paratorch checkpoint, or one whose write never finished)");
  nlohmann::json manifest = nlohmann::json::parse(formats::read_file_bytes((dir / "manifest.json").string()), nullptr,
                                                  /*allow_exceptions=*/false);
  if (manifest.is_discarded() || !manifest.is_object() || manifest.value("format", "") != kFormat)
    throw bad_checkpoint(where, "manifest.json is not a paratorch checkpoint manifest");
  if (manifest.value("version", 0) != kVersion)
    throw bad_checkpoint(
        where, "format version " + manifest["version"].dump() + ", this build reads " + std::to_string(kVersion));
  std::map<std::string, std::string> contents;
  for (const char* name : kFiles) {
    const auto& entry = manifest["files"][name];
    if (!entry.is_object() || !entry["bytes"].is_number_unsigned() || !entry["fnv1a64"].is_string())
      throw bad_checkpoint(where, std::string("manifest.json does not list ") + name);
    if (!fs::exists(dir / name)) throw bad_checkpoint(where, std::string(name) + " is missing");
    std::string bytes = formats::read_file_bytes((dir / name).string());
    if (bytes.size() != entry["bytes"].get<uint64_t>())
      throw bad_checkpoint(where, std::string(name) + " is " + std::to_string(bytes.size()) +
                                      " bytes, the manifest says " + entry["bytes"].dump() + " (truncated?)");
    if (fnv1a64_hex(bytes) != entry["fnv1a64"].get<std::string>())
      throw bad_checkpoint(where, std::string(name) + " does not match its checksum (corrupt)");
    contents[name] = std::move(bytes);
  }
  Checkpoint ckpt;
  if (!manifest["step"].is_number_integer() || !manifest["layout"].is_string() ||
      !manifest["world_size"].is_number_integer())
    throw bad_checkpoint(where, "manifest.json lacks step, layout or world_size");
  ckpt.step = manifest["step"].get<int64_t>();
  ckpt.layout = manifest["layout"].get<std::string>();
  ckpt.world_size = manifest["world_size"].get<int>();
  ckpt.config_toml = contents["config.toml"];
  auto parse = [&](const char* name) {
    const auto& bytes = contents[name];
    return formats::parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), where + "/" + name)
        .tensors;
  };
  ckpt.model = parse("model.safetensors");
  ckpt.optimizer = parse("optimizer.safetensors");
  return ckpt;
}

}  // namespace paratorch::checkpoints
