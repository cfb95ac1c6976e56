// tests/parallel/zero/flat_buffer_test.cpp — FlatLayout: padding, pieces that straddle
// shard boundaries, views, the decay mask; and the loss scaler's rules.
#include "parallel/zero/flat_buffer.h"
#include "parallel/zero/loss_scaler.h"
#include <paratorch/errors.h>

#include <gtest/gtest.h>

namespace paratorch::zero {
namespace {

std::vector<FlatParam> three_params() {
  return {{"w", {3, 4}, true}, {"b", {5}, false}, {"e", {2, 2}, true}};  // 12 + 5 + 4 = 21
}

TEST(FlatLayout, PadsToEqualShardsAndPiecesCoverEachParameterOnce) {
  for (int ranks : {1, 2, 4, 5, 8, 30}) {
    std::vector<int64_t> covered(21, 0);
    for (int r = 0; r < ranks; ++r) {
      FlatLayout layout(three_params(), ranks, r);
      EXPECT_EQ(layout.numel(), 21);
      EXPECT_EQ(layout.padded_numel() % ranks, 0);
      EXPECT_GE(layout.padded_numel(), 21);
      EXPECT_LT(layout.padded_numel() - 21, ranks);
      int64_t in_shard = 0;
      for (const auto& piece : layout.pieces()) {
        const int64_t flat = layout.offset(piece.param) + piece.param_offset;
        EXPECT_EQ(flat, layout.shard_begin() + piece.shard_offset);
        EXPECT_LE(piece.shard_offset + piece.length, layout.shard_numel());
        for (int64_t k = 0; k < piece.length; ++k) ++covered[static_cast<size_t>(flat + k)];
        in_shard += piece.length;
      }
      EXPECT_LE(in_shard, layout.shard_numel());
    }
    for (int64_t c : covered) EXPECT_EQ(c, 1) << ranks << " ranks";
  }
}

TEST(FlatLayout, StraddlingParameterIsSplitAcrossShards) {
  // 4 ranks, shard 6: w = [0,12) spans shards 0 and 1, b = [12,17) spans 2,
  // e = [17,21) spans 2 and 3 (padding 21..23 in shard 3).
  FlatLayout r1(three_params(), 4, 1), r2(three_params(), 4, 2), r3(three_params(), 4, 3);
  ASSERT_EQ(r1.pieces().size(), 1u);
  EXPECT_EQ(r1.pieces()[0].param_offset, 6);
  ASSERT_EQ(r2.pieces().size(), 2u);
  EXPECT_EQ(r2.pieces()[1].param, 2u);
  EXPECT_EQ(r2.pieces()[1].length, 1);
  ASSERT_EQ(r3.pieces().size(), 1u);
  EXPECT_EQ(r3.pieces()[0].param_offset, 1);
  EXPECT_EQ(r3.pieces()[0].length, 3);
}

TEST(FlatLayout, ViewsAliasTheBufferAndMaskMarksDecayingElements) {
  FlatLayout layout(three_params(), 4, 2);
  auto flat = torch::arange(24, torch::kFloat);
  auto views = layout.views(flat);
  EXPECT_EQ(views[0].sizes(), torch::IntArrayRef({3, 4}));
  EXPECT_EQ(views[2][1][1].item<float>(), 20.0f);
  views[1].fill_(-1);
  EXPECT_EQ(flat[12].item<float>(), -1.0f);
  // Shard 2 is elements 12..17: b (no decay) then e's first element (decay).
  auto mask = layout.shard_decay_mask();
  EXPECT_TRUE(torch::equal(mask, torch::tensor({0.f, 0.f, 0.f, 0.f, 0.f, 1.f})));
  auto shard = torch::zeros({6});
  auto pieces = layout.piece_views(shard);
  pieces[1].fill_(7);
  EXPECT_EQ(shard[5].item<float>(), 7.0f);
  EXPECT_THROW(FlatLayout(three_params(), 2, 2), UsageError);
}

TEST(LossScaler, HalvesAndSkipsOnOverflowGrowsAfterCleanSteps) {
  LossScalerOptions options;
  options.initial_scale = 1024;
  options.growth_interval = 3;
  LossScaler scaler(options);
  EXPECT_TRUE(scaler.update(false));
  EXPECT_TRUE(scaler.update(false));
  EXPECT_FALSE(scaler.update(true));  // overflow: skip, halve, restart the clean count
  EXPECT_EQ(scaler.scale(), 512);
  EXPECT_EQ(scaler.skipped_steps(), 1);
  EXPECT_TRUE(scaler.update(false));
  EXPECT_TRUE(scaler.update(false));
  EXPECT_EQ(scaler.scale(), 512);
  EXPECT_TRUE(scaler.update(false));  // third clean step in a row
  EXPECT_EQ(scaler.scale(), 1024);
  options.backoff_factor = 1.5;
  EXPECT_THROW(LossScaler{options}, UsageError);
}

// A checkpoint carries scale, clean-step count and skips; a resumed scaler
// continues exactly (the next clean step doubles, as it would have).
TEST(LossScaler, StateRoundTripsAndAnFp32CheckpointLeavesItAlone) {
  LossScalerOptions options;
  options.initial_scale = 1024;
  options.growth_interval = 3;
  LossScaler a(options), b(options);
  a.update(true);
  a.update(false);
  a.update(false);
  b.load_state(a.state());
  EXPECT_EQ(b.scale(), 512);
  EXPECT_EQ(b.skipped_steps(), 1);
  EXPECT_TRUE(b.update(false));
  EXPECT_EQ(b.scale(), 1024) << "the third clean step in a row, counting the two before the checkpoint";
  LossScaler c(options);
  c.load_state({{"step", torch::tensor(int64_t{7})}});
  EXPECT_EQ(c.scale(), 1024);
  auto bad = a.state();
  bad["loss_scaler.scale"] = torch::tensor(0.0, torch::kDouble);
  EXPECT_THROW(c.load_state(bad), RuntimeFailure);
}

}  // namespace
}  // namespace paratorch::zero
