// src/checkpoint/sharded_folder.cpp — see sharded_folder.h.
#include "checkpoint/sharded_folder.h"

#include "formats/atomic_file.h"
#include <paratorch/compat.h>
#include <paratorch/errors.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <unistd.h>

namespace paratorch::checkpoints {
namespace fs = std::filesystem;
namespace {

// Every rank's string, by rank: lengths first, then the padded bytes. A
// null group is this process alone.
std::vector<std::string> all_gather_strings(Communicator* group, const std::string& mine) {
  if (!group) return {mine};
  Communicator& comm = *group;
  auto lengths = torch::zeros({comm.size()}, torch::kLong);
  comm.all_gather(lengths, torch::tensor({static_cast<int64_t>(mine.size())}, torch::kLong));
  const int64_t longest = std::max<int64_t>(1, lengths.max().item<int64_t>());
  auto padded = torch::zeros({longest}, torch::kByte);
  std::memcpy(padded.data_ptr(), mine.data(), mine.size());
  auto all = torch::empty({comm.size() * longest}, torch::kByte);
  comm.all_gather(all, padded);
  std::vector<std::string> out;
  for (int r = 0; r < comm.size(); ++r)
    out.emplace_back(reinterpret_cast<const char*>(all.data_ptr<uint8_t>()) + r * longest,
                     static_cast<size_t>(lengths[r].item<int64_t>()));
  return out;
}

// A test hook (docs/checkpoints.md): PARATORCH_CHECKPOINT_CRASH=RANK:STEP
// kills rank RANK once its shard of step STEP is written, before the commit.
void maybe_crash(int rank, int64_t step) {
  const char* env = std::getenv("PARATORCH_CHECKPOINT_CRASH");
  if (!env) return;
  int r = -1;
  long long s = -1;
  if (std::sscanf(env, "%d:%lld", &r, &s) == 2 && r == rank && s == step) ::kill(::getpid(), SIGKILL);
}

// Rank 0: a fresh temporary folder for `step`, after removing any left by
// an earlier attempt at the same step (a crash leaves one).
std::string make_tmp_folder(const fs::path& root, int64_t step) {
  std::error_code ec;
  fs::create_directories(root, ec);
  const std::string prefix = step_folder_name(step) + ".tmp-";
  if (fs::is_directory(root))
    for (const auto& entry : fs::directory_iterator(root))
      if (entry.path().filename().string().rfind(prefix, 0) == 0) fs::remove_all(entry.path(), ec);
  const fs::path tmp = root / (prefix + std::to_string(::getpid()));
  if (!fs::create_directories(tmp, ec) && ec)
    throw RuntimeFailure("paratorch: cannot create checkpoint folder " + tmp.string() + ": " + ec.message());
  return tmp.string();
}

// This rank's records as an index of its own file (parse_index checks them on rank 0).
std::string write_my_shard(const std::string& tmp, const std::vector<formats::Piece>& mine, int rank, int world) {
  formats::ShardedIndex own;
  if (!mine.empty()) {
    const std::string file = formats::shard_file_name(rank, world);
    own.pieces = formats::write_shard_file(tmp + "/" + file, mine);
    own.file_bytes[file] = fs::file_size(fs::path(tmp) / file);
  }
  return formats::index_json(own);
}

std::string without_prefix(std::string message) {
  return message.rfind("paratorch: ", 0) == 0 ? message.substr(11) : message;
}

std::string first_failure(const std::vector<std::string>& failures) {
  for (size_t r = 0; r < failures.size(); ++r)
    if (!failures[r].empty()) return failures[r];
  return "";
}

}  // namespace

namespace {

std::string write_sharded(const std::string& root, const std::vector<formats::Piece>& mine,
                          const ShardedCheckpointInfo& info, Communicator* world) {
  const int rank = world ? world->rank() : 0, size = world ? world->size() : 1;
  // 1. The folder, named by rank 0 (its pid travels as the folder's name).
  std::string tmp, failure;
  if (rank == 0) {
    try {
      tmp = make_tmp_folder(root, info.step);
    } catch (const std::exception& e) {
      failure = e.what();
    }
  }
  const auto named = all_gather_strings(world, rank == 0 ? (failure.empty() ? tmp : "\n" + failure) : "");
  if (!named[0].empty() && named[0][0] == '\n') throw RuntimeFailure(named[0].substr(1));
  tmp = named[0];
  // 2. Every rank its own file, then everyone's records (or failure).
  std::string records;
  try {
    records = write_my_shard(tmp, mine, rank, size);
  } catch (const std::exception& e) {
    failure = "rank " + std::to_string(rank) + " failed: " + without_prefix(e.what());
  }
  maybe_crash(rank, info.step);
  const auto all_failures = all_gather_strings(world, failure);
  const auto all_records = all_gather_strings(world, records);
  std::string problem = first_failure(all_failures);
  // 3. Rank 0 commits: config, the index last, then the folder and `latest`.
  std::string folder;
  if (rank == 0 && problem.empty()) {
    try {
      formats::ShardedIndex index;
      index.step = info.step;
      index.layout = info.layout;
      index.world_size = size;
      index.libtorch = compat::torch_version();
      for (int r = 0; r < size; ++r) {
        auto own = formats::parse_index(all_records[r], "rank " + std::to_string(r) + "'s shard records");
        index.file_bytes.insert(own.file_bytes.begin(), own.file_bytes.end());
        index.pieces.insert(index.pieces.end(), own.pieces.begin(), own.pieces.end());
      }
      formats::write_file_atomic(tmp + "/config.toml", info.config_toml);
      index.file_bytes["config.toml"] = info.config_toml.size();
      formats::write_file_atomic(tmp + "/" + formats::kIndexFile, formats::index_json(index));
      formats::sync_directory(tmp);
      commit_step_folder(root, tmp, info.step);
      folder = (fs::path(root) / step_folder_name(info.step)).string();
    } catch (const std::exception& e) {
      problem = "rank 0 failed to commit: " + without_prefix(e.what());
    }
  }
  if (rank == 0 && !problem.empty()) {
    std::error_code ec;
    fs::remove_all(tmp, ec);  // nothing half-written holds the space
  }
  const auto outcome = all_gather_strings(world, rank == 0 ? problem : "");
  if (!outcome[0].empty())
    throw RuntimeFailure("paratorch: checkpoint of step " + std::to_string(info.step) + " not written (" + outcome[0] +
                         ")");
  return (fs::path(root) / step_folder_name(info.step)).string();
}

}  // namespace

std::string write_sharded_checkpoint(const std::string& root, const std::vector<formats::Piece>& mine,
                                     const ShardedCheckpointInfo& info, Communicator& world) {
  return write_sharded(root, mine, info, &world);
}

std::string write_whole_checkpoint(const std::string& root, const Checkpoint& ckpt, Communicator* world) {
  const bool writer = !world || world->rank() == 0;
  const auto pieces = writer ? spread_whole_tensors(ckpt.model, ckpt.optimizer, 0, 1) : std::vector<formats::Piece>{};
  return write_sharded(root, pieces, {ckpt.step, ckpt.layout, ckpt.config_toml}, world);
}

namespace {
Checkpoint read_sharded(const std::string& dir, const formats::ShardPlan& plan) {
  formats::ShardedReader reader(dir);
  const auto& index = reader.index();
  Checkpoint ckpt;
  ckpt.step = index.step;
  ckpt.layout = index.layout;
  ckpt.world_size = index.world_size;
  const std::string config_path = dir + "/config.toml";
  ckpt.config_toml = formats::read_file_bytes(config_path);
  auto listed = index.file_bytes.find("config.toml");
  if (listed == index.file_bytes.end() || listed->second != ckpt.config_toml.size())
    throw RuntimeFailure("paratorch: " + dir + ": config.toml does not have the size the index gives");
  // A parameter the plan names comes back as its shard where the split
  // matches; one it does not name is skipped (all are read when it is empty).
  auto read = [&](const std::string& section, const std::string& key, const std::string& parameter) {
    auto it = plan.find(parameter);
    return it == plan.end() ? reader.whole(section, key) : reader.part(section, key, it->second);
  };
  auto wanted = [&](const std::string& parameter) { return plan.empty() || plan.count(parameter) > 0; };
  for (const auto& name : reader.names("model"))
    if (wanted(name)) ckpt.model[name] = read("model", name, name);
  // "<parameter>.<kind>" follows its parameter; state of no parameter is everyone's.
  for (const auto& key : reader.names("optimizer")) {
    const auto dot = key.rfind('.');
    const std::string parameter = dot == std::string::npos ? "" : key.substr(0, dot);
    if (!reader.has("model", parameter))
      ckpt.optimizer[key] = reader.whole("optimizer", key);
    else if (wanted(parameter))
      ckpt.optimizer[key] = read("optimizer", key, parameter);
  }
  return ckpt;
}
}  // namespace

Checkpoint read_sharded_checkpoint(const std::string& dir, const formats::ShardPlan& plan) {
  try {
    return read_sharded(dir, plan);
  } catch (const RuntimeFailure& e) {
    throw RuntimeFailure("paratorch: checkpoint " + without_prefix(e.what()));
  }
}

std::vector<formats::Piece> spread_whole_tensors(const std::map<std::string, torch::Tensor>& model,
                                                 const std::map<std::string, torch::Tensor>& optimizer, int rank,
                                                 int world) {
  std::vector<formats::Piece> out;
  int i = 0;
  for (const auto* section : {&model, &optimizer})
    for (const auto& [name, tensor] : *section) {
      if (i++ % world != rank) continue;
      formats::Piece piece;
      piece.section = section == &model ? "model" : "optimizer";
      piece.name = name;
      piece.whole_shape = tensor.sizes().vec();
      piece.data = tensor;
      out.push_back(std::move(piece));
    }
  return out;
}

}  // namespace paratorch::checkpoints
