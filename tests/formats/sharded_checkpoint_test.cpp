// tests/formats/sharded_checkpoint_test.cpp — the sharded checkpoint format:
// whole tensors come back bit for bit from tp shards (fused blocks too) cut
// into ZeRO pieces across files; a gap, an overlap, a flipped byte, a short
// or missing file and a bad index are each refused by name; a reader checks
// the pieces it reads, so damage elsewhere in a file does not stop it.
#include <gtest/gtest.h>

#include "error_text.h"

#include "formats/atomic_file.h"
#include "formats/sharded_checkpoint.h"
#include <paratorch/errors.h>
#include <paratorch/tensor_parallel_layers.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace paratorch::formats {
namespace {
namespace fs = std::filesystem;

std::string fresh_dir(const std::string& name) {
  const fs::path dir = fs::path(::testing::TempDir()) / ("paratorch_sharded_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

using paratorch_test::error_of;

// What a world of ranks would write: each inner vector is one rank's pieces.
void write_folder(const std::string& dir, const std::vector<std::vector<Piece>>& ranks) {
  ShardedIndex index;
  index.step = 7;
  index.layout = "dp=2,pp=1,tp=2";
  index.world_size = static_cast<int>(ranks.size());
  for (size_t r = 0; r < ranks.size(); ++r) {
    if (ranks[r].empty()) continue;
    const std::string file = shard_file_name(static_cast<int>(r), index.world_size);
    auto records = write_shard_file(dir + "/" + file, ranks[r]);
    index.file_bytes[file] = fs::file_size(fs::path(dir) / file);
    index.pieces.insert(index.pieces.end(), records.begin(), records.end());
  }
  write_file_atomic(dir + "/" + kIndexFile, index_json(index));
}

Piece piece(const std::string& name, const torch::Tensor& whole, PieceRegion region, const torch::Tensor& data) {
  return Piece{"model", name, whole.sizes().vec(), region, data};
}

// qkv-like [12, 4]: 3 fused blocks split over tp = 2 along dim 0; each tp
// shard cut by ZeRO into two flat pieces at element 7, over dp = 2 ranks.
struct Fixture {
  torch::Tensor qkv = torch::randn({12, 4}), rows = torch::randn({4, 6}), norm = torch::randn({4});
  torch::Tensor step = torch::tensor({int64_t{41}});
  std::vector<std::vector<Piece>> ranks = std::vector<std::vector<Piece>>(4);

  Fixture() {
    for (int tp = 0; tp < 2; ++tp) {
      tensor_parallel::ShardSpec fused{0, 3, tp, 2}, by_col{1, 1, tp, 2};
      const auto shard = fused.slice(qkv).reshape({-1});
      ranks[tp * 2 + 0].push_back(piece("qkv", qkv, {0, 3, 2, tp, 0}, shard.narrow(0, 0, 7)));
      ranks[tp * 2 + 1].push_back(piece("qkv", qkv, {0, 3, 2, tp, 7}, shard.narrow(0, 7, shard.numel() - 7)));
      ranks[tp * 2 + tp].push_back(piece("rows", rows, {1, 1, 2, tp, 0}, by_col.slice(rows)));
    }
    ranks[3].push_back(piece("norm", norm, {}, norm));
    ranks[0].push_back(Piece{"optimizer", "step", {1}, {}, step});
  }
};

TEST(ShardedCheckpoint, WholeTensorsComeBackBitForBitFromTpShardsCutIntoZeroPieces) {
  const auto dir = fresh_dir("round_trip");
  Fixture f;
  write_folder(dir, f.ranks);
  ShardedReader reader(dir);
  EXPECT_EQ(reader.index().step, 7);
  EXPECT_EQ(reader.names("model"), (std::vector<std::string>{"norm", "qkv", "rows"}));
  EXPECT_TRUE(torch::equal(reader.whole("model", "qkv"), f.qkv));
  EXPECT_TRUE(torch::equal(reader.whole("model", "rows"), f.rows));
  EXPECT_TRUE(torch::equal(reader.whole("model", "norm"), f.norm));
  EXPECT_TRUE(torch::equal(reader.whole("optimizer", "step"), f.step));
  EXPECT_NE(error_of([&] { reader.whole("model", "absent"); }).find("holds no tensor 'absent'"), std::string::npos);
}

// A reader with the saved split reads only its shard: damage to the other
// tp rank's pieces does not reach it, while the whole tensor is refused.
TEST(ShardedCheckpoint, AReaderWithTheSameSplitReadsOnlyItsShard) {
  const auto dir = fresh_dir("part");
  Fixture f;
  write_folder(dir, f.ranks);
  const auto file = fs::path(dir) / shard_file_name(0, 4);  // qkv's tp-0 head, rows' tp-0 shard, then step
  std::string bytes = read_file_bytes(file.string());
  bytes[bytes.size() - 1 - 8] ^= 0x40;  // the last byte of rows' tp-0 shard (step's 8 bytes follow)
  std::ofstream(file, std::ios::binary) << bytes;
  ShardedReader reader(dir);
  const tensor_parallel::ShardSpec mine{1, 1, 1, 2};
  EXPECT_TRUE(torch::equal(reader.part("model", "rows", {1, 1, 2, 1, 0}), mine.slice(f.rows)));
  EXPECT_NE(error_of([&] { reader.whole("model", "rows"); }).find("does not match its checksum"), std::string::npos);
  // Another split (tp = 4 here, or none) gets the whole tensor to slice.
  Fixture g;
  const auto clean = fresh_dir("part_clean");
  write_folder(clean, g.ranks);
  ShardedReader other(clean);
  EXPECT_TRUE(torch::equal(other.part("model", "qkv", {0, 3, 4, 1, 0}), g.qkv));
  EXPECT_TRUE(torch::equal(other.part("model", "qkv", {}), g.qkv));
  EXPECT_TRUE(torch::equal(other.part("model", "qkv", {0, 3, 2, 1, 0}), tensor_parallel::ShardSpec{0, 3, 1, 2}.slice(g.qkv)));
}

TEST(ShardedCheckpoint, AMissingPieceIsAGapAndADoubleWriteAnOverlap) {
  Fixture gap;
  gap.ranks[1].erase(gap.ranks[1].begin());  // qkv's tp-0 tail
  const auto a = fresh_dir("gap");
  write_folder(a, gap.ranks);
  EXPECT_NE(error_of([&] { ShardedReader(a).whole("model", "qkv"); }).find("not covered by its pieces (shard 0: elements 7..24 missing)"),
            std::string::npos);
  Fixture twice;  // two replicas both wrote norm
  twice.ranks[2].push_back(piece("norm", twice.norm, {}, twice.norm));
  const auto b = fresh_dir("overlap");
  write_folder(b, twice.ranks);
  EXPECT_NE(error_of([&] { ShardedReader(b).whole("model", "norm"); }).find("not covered by its pieces (shard 0: two pieces overlap at element 0)"), std::string::npos);
}

TEST(ShardedCheckpoint, AFlippedByteIsRefusedAsCorruptNamingThePiece) {
  const auto dir = fresh_dir("flip");
  Fixture f;
  write_folder(dir, f.ranks);
  const auto file = fs::path(dir) / shard_file_name(3, 4);  // qkv's tp-1 tail, rows' tp-1 shard, then norm
  std::string bytes = read_file_bytes(file.string());
  bytes[bytes.size() - 1] ^= 0x40;  // norm's last byte
  std::ofstream(file, std::ios::binary) << bytes;
  ShardedReader reader(dir);
  EXPECT_TRUE(torch::equal(reader.whole("model", "rows"), f.rows)) << "rows has no piece in the damaged file";
  const auto e = error_of([&] { reader.whole("model", "norm"); });
  EXPECT_NE(e.find(file.string() + ": piece 'model/norm@0+0' does not match its checksum (corrupt)"), std::string::npos) << e;
}

TEST(ShardedCheckpoint, ATruncatedOrMissingShardFileIsRefusedWhenOpened) {
  const auto dir = fresh_dir("short");
  Fixture f;
  write_folder(dir, f.ranks);
  fs::resize_file(fs::path(dir) / shard_file_name(1, 4), 50);
  auto e = error_of([&] { ShardedReader reader(dir); });
  EXPECT_NE(e.find("shard file shard-00001-of-00004.safetensors is 50 bytes, the index says"), std::string::npos) << e;
  EXPECT_NE(e.find("(truncated?)"), std::string::npos) << e;
  fs::remove(fs::path(dir) / shard_file_name(1, 4));
  e = error_of([&] { ShardedReader reader(dir); });
  EXPECT_NE(e.find("shard file shard-00001-of-00004.safetensors is missing"), std::string::npos) << e;
}

TEST(ShardedCheckpoint, AMalformedIndexIsRefusedNamingTheProblem) {
  const std::string ok = R"({"format":"paratorch-sharded-checkpoint","version":1,"step":1,"layout":"x","world_size":1,
    "files":{"a":{"bytes":8}},"tensors":{"model":{"w":{"shape":[4],"dtype":"F32","pieces":[
    {"split_dim":-1,"split_parts":1,"split_size":1,"split_rank":0,"flat_offset":2,"numel":%N%,
     "file":"%F%","key":"k","fnv1a64":"0"}]}}}})";
  auto with = [&](const std::string& n, const std::string& f) {
    std::string text = ok;
    text.replace(text.find("%N%"), 3, n);
    text.replace(text.find("%F%"), 3, f);
    return text;
  };
  EXPECT_NO_THROW(parse_index(with("2", "a"), "index.json"));
  EXPECT_NE(error_of([&] { parse_index(with("3", "a"), "index.json"); }).find("a piece beyond the end of its shard"),
            std::string::npos);
  EXPECT_NE(error_of([&] { parse_index(with("2", "b"), "index.json"); }).find("names a file the index does not list: b"),
            std::string::npos);
  EXPECT_NE(error_of([&] { parse_index("{\"format\":1}", "index.json"); }).find("not a paratorch sharded checkpoint index"),
            std::string::npos);
  EXPECT_NE(error_of([&] { parse_index("[", "index.json"); }).find("index.json: not JSON"), std::string::npos);
}

}  // namespace
}  // namespace paratorch::formats
