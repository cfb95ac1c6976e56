// tests/parallel/async/shard_plan_test.cpp — key ranges over servers: every row has
// exactly one owner, servers get about equal bytes, large tensors split by rows.
#include "parallel/async/shard_plan.h"

#include <paratorch/errors.h>

#include <gtest/gtest.h>

#include <map>

namespace paratorch::async {
namespace {

using Params = std::vector<std::pair<std::string, torch::Tensor>>;

// Each server's bytes, and a check that pieces tile every parameter's rows in order.
std::vector<int64_t> bytes_per_server(const ShardPlan& plan, const Params& params) {
  std::vector<int64_t> bytes(static_cast<size_t>(plan.servers), 0);
  std::vector<int64_t> next_row(params.size(), 0);
  for (const auto& p : plan.pieces) {
    EXPECT_EQ(p.row_begin, next_row[p.param]) << p.key;
    EXPECT_GT(p.row_end, p.row_begin) << p.key;
    next_row[p.param] = p.row_end;
    bytes[static_cast<size_t>(p.server)] += p.numel * 4;
    EXPECT_EQ(piece_view(params[p.param].second, p).numel(), p.numel);
  }
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& t = params[i].second;
    EXPECT_EQ(next_row[i], t.dim() == 0 ? 1 : t.size(0)) << params[i].first;
  }
  return bytes;
}

TEST(ShardPlan, OneServerHoldsEveryTensorWhole) {
  Params params = {{"w", torch::zeros({8, 4})}, {"b", torch::zeros({4})}, {"mu", torch::zeros({})}};
  auto plan = plan_shards(params, 1);
  ASSERT_EQ(plan.pieces.size(), 3u);
  for (const auto& p : plan.pieces) EXPECT_EQ(p.key, p.name);
  EXPECT_EQ(bytes_per_server(plan, params)[0], (32 + 4 + 1) * 4);
}

TEST(ShardPlan, LargeTensorSplitsByRowsAndBytesBalance) {
  // One big table and small tensors: the table must be split across 3 servers.
  Params params = {{"table", torch::zeros({300, 16})}, {"bias", torch::zeros({300})}, {"mu", torch::zeros({})}};
  auto plan = plan_shards(params, 3);
  auto bytes = bytes_per_server(plan, params);
  const int64_t total = (300 * 16 + 300 + 1) * 4;
  for (int64_t b : bytes) EXPECT_NEAR(static_cast<double>(b), total / 3.0, 16 * 4) << "one row of slack";
  int table_pieces = 0;
  for (const auto& p : plan.pieces)
    if (p.name == "table") {
      ++table_pieces;
      EXPECT_NE(p.key, "table") << "a split piece has its own key";
      EXPECT_EQ(piece_view(params[0].second, p).dim(), 2) << "a piece of a matrix stays a matrix";
    }
  EXPECT_EQ(table_pieces, 3);
}

TEST(ShardPlan, MoreServersThanRowsLeavesSomeEmpty) {
  Params params = {{"w", torch::zeros({2, 4})}};
  auto plan = plan_shards(params, 4);
  auto bytes = bytes_per_server(plan, params);
  int64_t sum = 0;
  for (auto b : bytes) sum += b;
  EXPECT_EQ(sum, 8 * 4);
}

// A checkpoint of whole tensors cut into any server count's pieces (values
// and "<name>.<kind>" optimizer state, dotted names included) joins back bit
// for bit, and "step" passes through both ways.
TEST(ShardPlan, PiecesCutFromWholeTensorsJoinBackBitForBit) {
  Params params = {
      {"emb.weight", torch::randn({300, 16})}, {"emb.bias", torch::randn({300})}, {"mu", torch::randn({})}};
  std::map<std::string, torch::Tensor> whole = {{"step", torch::tensor(7, torch::kLong)}};
  for (const auto& [name, t] : params) whole[name] = t, whole[name + ".exp_avg"] = t * 2;
  for (int servers : {1, 2, 3}) {
    const auto plan = plan_shards(params, servers);
    std::map<std::string, torch::Tensor> all;
    for (int k = 0; k < servers; ++k)
      for (const auto& [key, t] : pieces_from_whole(whole, plan.pieces_of(k))) all[key] = t.clone();
    for (const auto& piece : plan.pieces) {
      EXPECT_TRUE(all.count(piece.key)) << piece.key;
      EXPECT_TRUE(all.count(piece.key + ".exp_avg")) << piece.key;
    }
    const auto back = whole_from_pieces(all);
    ASSERT_EQ(back.size(), whole.size()) << servers << " servers";
    for (const auto& [key, t] : whole)
      EXPECT_TRUE(torch::equal(back.at(key), t)) << key << ", " << servers << " servers";
  }
}

// torch::optim's Adam keeps a step count per parameter ("<name>.step", as
// optimizer_state_by_name writes it): it holds for every row, so each
// server's piece takes it whole while the moments are cut by rows.
TEST(ShardPlan, APerParameterStepCountGoesWholeToEveryPiece) {
  Params params = {{"emb.weight", torch::randn({300, 16})}};
  const std::map<std::string, torch::Tensor> whole = {{"emb.weight", params[0].second},
                                                      {"emb.weight.exp_avg", params[0].second * 2},
                                                      {"emb.weight.step", torch::tensor({9}, torch::kLong)}};
  const auto plan = plan_shards(params, 2);
  ASSERT_EQ(plan.pieces.size(), 2u);
  for (int k = 0; k < 2; ++k) {
    const auto piece = plan.pieces_of(k).at(0);
    const auto cut = pieces_from_whole(whole, plan.pieces_of(k));
    EXPECT_TRUE(torch::equal(cut.at(piece.key + ".step"), whole.at("emb.weight.step"))) << piece.key;
    EXPECT_TRUE(torch::equal(cut.at(piece.key + ".exp_avg"), piece_view(whole.at("emb.weight.exp_avg"), piece)));
  }
}

TEST(ShardPlan, JoiningPiecesThatDoNotTileATensorIsRefused) {
  const auto rows = torch::zeros({10, 2});
  auto join = [&](std::map<std::string, torch::Tensor> pieces) { return whole_from_pieces(pieces); };
  EXPECT_THROW(join({{"w@rows0-4", rows.narrow(0, 0, 4)}, {"w@rows5-10", rows.narrow(0, 5, 5)}}), RuntimeFailure)
      << "rows 4-5 missing";
  EXPECT_THROW(join({{"w@rows0-6", rows.narrow(0, 0, 6)}, {"w@rows5-10", rows.narrow(0, 5, 5)}}), RuntimeFailure)
      << "rows 5-6 twice";
  EXPECT_THROW(join({{"w@rows0-4", rows.narrow(0, 0, 3)}}), RuntimeFailure) << "a piece of the wrong size";
  EXPECT_THROW(join({{"w", rows}, {"w@rows0-10", rows}}), RuntimeFailure) << "whole and in pieces";
  try {
    join({{"w@rows0-4", rows.narrow(0, 0, 4)}, {"w@rows5-10", rows.narrow(0, 5, 5)}});
  } catch (const RuntimeFailure& e) {
    EXPECT_NE(std::string(e.what()).find("miss rows 4-5"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace paratorch::async
