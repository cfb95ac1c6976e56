// tests/checkpoint/step_folder_test.cpp — checkpoint folders round-trip,
// follow `latest`, and refuse truncated, corrupt or unfinished folders by name.
#include "checkpoint/step_folder.h"

#include "formats/atomic_file.h"
#include <paratorch/errors.h>

#include <gtest/gtest.h>

#include "error_text.h"

#include <chrono>
#include <filesystem>
#include <fstream>

namespace paratorch::checkpoints {
namespace {
namespace fs = std::filesystem;

fs::path scratch(const std::string& name) {
  auto dir = fs::temp_directory_path() / ("paratorch_ckpt_test_" + std::to_string(::getpid())) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

Checkpoint sample_checkpoint(int64_t step) {
  Checkpoint c;
  c.step = step;
  c.config_toml = "[model]\nname = \"gpt\"\n";
  c.layout = "dp=2,pp=1,tp=1";
  c.world_size = 2;
  c.model = {{"transformer.wte.weight", torch::randn({7, 4})}, {"transformer.ln_f.bias", torch::randn({4})}};
  c.optimizer = {{"step", torch::tensor(step, torch::kLong)}, {"transformer.wte.weight.exp_avg", torch::randn({7, 4})}};
  return c;
}

using paratorch_test::error_of;

TEST(StepFolder, RoundTripsEveryTensorAndField) {
  const auto root = scratch("roundtrip");
  const Checkpoint c = sample_checkpoint(5);
  const std::string dir = write_checkpoint(root.string(), c);
  EXPECT_EQ(fs::path(dir).filename(), "step-000005");
  const Checkpoint back = read_checkpoint(dir);
  EXPECT_EQ(back.step, 5);
  EXPECT_EQ(back.layout, c.layout);
  EXPECT_EQ(back.world_size, 2);
  EXPECT_EQ(back.config_toml, c.config_toml);
  ASSERT_EQ(back.model.size(), c.model.size());
  for (const auto& [name, t] : c.model) EXPECT_TRUE(torch::equal(back.model.at(name), t)) << name;
  for (const auto& [name, t] : c.optimizer) EXPECT_TRUE(torch::equal(back.optimizer.at(name), t)) << name;
}

// A parameter-server run's out_dir (a folder per server, tables in row
// pieces) reads as one checkpoint of whole tensors at the oldest server's
// step; where the out_dir also holds a step folder, the run written last is read.
TEST(StepFolder, ServerFoldersReadAsOneWholeCheckpointAndTheRunWrittenLastWins) {
  const auto root = scratch("servers");
  const Checkpoint whole = sample_checkpoint(6);
  const auto& wte = whole.model.at("transformer.wte.weight");
  const auto& moment = whole.optimizer.at("transformer.wte.weight.exp_avg");
  Checkpoint s0 = whole, s1 = whole;
  s0.layout = s1.layout = "ps servers=2 workers=3";
  s0.world_size = s1.world_size = 1;  // each server writes alone
  s1.step = 5;
  s0.model = {{"transformer.wte.weight@rows0-3", wte.narrow(0, 0, 3)},
              {"transformer.ln_f.bias", whole.model.at("transformer.ln_f.bias")}};
  s1.model = {{"transformer.wte.weight@rows3-7", wte.narrow(0, 3, 4)}};
  s0.optimizer = {{"step", torch::tensor(6, torch::kLong)},
                  {"transformer.wte.weight@rows0-3.exp_avg", moment.narrow(0, 0, 3)}};
  s1.optimizer = {{"step", torch::tensor(5, torch::kLong)},
                  {"transformer.wte.weight@rows3-7.exp_avg", moment.narrow(0, 3, 4)}};
  write_checkpoint((root / "checkpoints" / "server-0").string(), s0);
  write_checkpoint((root / "checkpoints" / "server-1").string(), s1);
  const Checkpoint back = read_checkpoint(root.string());
  EXPECT_EQ(back.step, 5) << "the oldest server's";
  EXPECT_EQ(back.world_size, 5) << "servers + workers";
  EXPECT_EQ(back.layout, s0.layout);
  ASSERT_EQ(back.model.size(), whole.model.size());
  for (const auto& [name, t] : whole.model) EXPECT_TRUE(torch::equal(back.model.at(name), t)) << name;
  EXPECT_TRUE(torch::equal(back.optimizer.at("transformer.wte.weight.exp_avg"), moment));
  EXPECT_EQ(back.optimizer.at("step").item<int64_t>(), 6) << "server 0's optimizer step count";

  using namespace std::chrono_literals;
  const auto later = fs::file_time_type::clock::now() + 10s;
  const std::string sync_step = write_checkpoint((root / "checkpoints").string(), sample_checkpoint(9));
  fs::last_write_time(sync_step, later);
  EXPECT_EQ(read_checkpoint(root.string()).step, 9) << "a sync run written after the servers";
  fs::last_write_time(root / "checkpoints" / "server-0" / "latest", later + 10s);
  EXPECT_EQ(read_checkpoint(root.string()).step, 5) << "servers written after the sync run";
}

TEST(StepFolder, LatestPointsAtTheNewestAndOldOnesArePruned) {
  const auto out_dir = scratch("pruning"), root = out_dir / "checkpoints";
  for (int64_t s = 1; s <= kCheckpointsKept + 2; ++s) write_checkpoint(root.string(), sample_checkpoint(s));
  EXPECT_EQ(read_checkpoint(root.string()).step, kCheckpointsKept + 2);
  EXPECT_EQ(read_checkpoint(out_dir.string()).step, kCheckpointsKept + 2) << "via out_dir";
  EXPECT_FALSE(fs::exists(root / "step-000001"));
  EXPECT_TRUE(fs::exists(root / "step-000003"));
}

TEST(StepFolder, AnUnfinishedWriteLeavesThePreviousOneInCharge) {
  const auto root = scratch("unfinished");
  write_checkpoint(root.string(), sample_checkpoint(2));
  // A writer that died mid-way leaves a temporary folder without a manifest.
  fs::create_directories(root / "step-000004.tmp-999");
  std::ofstream(root / "step-000004.tmp-999" / "model.safetensors") << "partial";
  EXPECT_EQ(read_checkpoint(root.string()).step, 2);
  EXPECT_NE(error_of([&] { read_checkpoint((root / "step-000004.tmp-999").string()); }).find("no manifest.json"),
            std::string::npos);
}

TEST(StepFolder, TruncatedFileIsRefusedByName) {
  const auto root = scratch("truncated");
  const std::string dir = write_checkpoint(root.string(), sample_checkpoint(3));
  fs::resize_file(fs::path(dir) / "model.safetensors", 40);
  const std::string e = error_of([&] { read_checkpoint(dir); });
  EXPECT_NE(e.find("model.safetensors is 40 bytes"), std::string::npos) << e;
  EXPECT_NE(e.find("truncated"), std::string::npos) << e;
}

TEST(StepFolder, FlippedByteIsRefusedAsCorrupt) {
  const auto root = scratch("corrupt");
  const std::string dir = write_checkpoint(root.string(), sample_checkpoint(3));
  const auto file = fs::path(dir) / "optimizer.safetensors";
  std::string bytes = formats::read_file_bytes(file.string());
  bytes[bytes.size() - 3] ^= 0x40;
  formats::write_file_atomic(file.string(), bytes);
  const std::string e = error_of([&] { read_checkpoint(dir); });
  EXPECT_NE(e.find("optimizer.safetensors does not match its checksum"), std::string::npos) << e;
}

TEST(StepFolder, GarbageManifestIsRefused) {
  const auto root = scratch("manifest");
  const std::string dir = write_checkpoint(root.string(), sample_checkpoint(3));
  formats::write_file_atomic(dir + "/manifest.json", "{not json");
  EXPECT_NE(error_of([&] { read_checkpoint(dir); }).find("not a paratorch checkpoint manifest"), std::string::npos);
  EXPECT_NE(error_of([&] { read_checkpoint((root / "nowhere").string()); }).find("no such folder"), std::string::npos);
}

}  // namespace
}  // namespace paratorch::checkpoints
