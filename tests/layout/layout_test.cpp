// tests/layout/layout_test.cpp — parsing, resolution and Megatron rank order.
#include <gtest/gtest.h>

#include <paratorch/errors.h>
#include <paratorch/layout.h>

#include "layout/placement.h"

using paratorch::Layout;
using paratorch::UsageError;

TEST(Layout, ParsesKeysInAnyOrderWithAuto) {
  Layout l = Layout::parse("tp=2,dp=auto,pp=2");
  EXPECT_EQ(l.dp, 0);
  EXPECT_EQ(l.pp, 2);
  EXPECT_EQ(l.tp, 2);
  Layout r = l.resolve(8);
  EXPECT_EQ(r.dp, 2);
  EXPECT_EQ(r.to_string(), "dp=2,pp=2,tp=2");
}

TEST(Layout, RejectsBadKeysAndValues) {
  EXPECT_THROW(Layout::parse("dq=2"), UsageError);
  EXPECT_THROW(Layout::parse("dp=0"), UsageError);
  EXPECT_THROW(Layout::parse("pp=two"), UsageError);
  EXPECT_THROW(Layout::parse("dp"), UsageError);
}

TEST(Layout, MismatchListsTheValidLayouts) {
  try {
    Layout::parse("dp=3").resolve(4);
    FAIL();
  } catch (const UsageError& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("needs 3 ranks but the job has 4"), std::string::npos) << m;
    EXPECT_NE(m.find("dp=4,pp=1,tp=1"), std::string::npos) << m;
    EXPECT_NE(m.find("dp=1,pp=2,tp=2"), std::string::npos) << m;
  }
  EXPECT_THROW(Layout::parse("pp=3").resolve(4), UsageError);
}

TEST(Layout, TensorParallelVariesFastestThenDataThenPipeline) {
  Layout l = Layout::parse("dp=2,pp=2,tp=2").resolve(8);
  // rank = pp*(dp*tp) + dp*tp + tp
  EXPECT_EQ(l.coords_of(1).tp, 1);
  EXPECT_EQ(l.coords_of(2).dp, 1);
  EXPECT_EQ(l.coords_of(4).pp, 1);
  for (int r = 0; r < 8; ++r) EXPECT_EQ(l.rank_of(l.coords_of(r)), r);
  EXPECT_EQ(Layout::factorizations(8).size(), 10u);
  EXPECT_EQ(Layout::factorizations(1).size(), 1u);
}

// Ranks are ordered tp fastest, so tp groups are consecutive ranks: with 3
// ranks per host and tp = 2 the middle group straddles the two hosts.
TEST(Placement, TpGroupAcrossHostsIsFoundAndNamed) {
  const std::vector<std::string> hosts{"h0", "h0", "h0", "h1", "h1", "h1"};
  const paratorch::Layout layout = paratorch::Layout{0, 1, 2}.resolve(6);
  const auto across = paratorch::tp_groups_across_hosts(layout, hosts);
  ASSERT_EQ(across.size(), 1u);
  EXPECT_EQ(across[0], (std::vector<int>{2, 3}));
  const std::string w = paratorch::tp_placement_warning(layout, hosts, {0, 1, 2, 3, 4, 5});
  EXPECT_NE(w.find("1 of 3 tp groups span hosts (world ranks 2,3 on h0, h1)"), std::string::npos) << w;
  EXPECT_NE(w.find("tp = 2 divides (ranks per host now: h0: 3, h1: 3)"), std::string::npos) << w;
}

TEST(Placement, TpInsideHostsWhilePpAndDpSpanThemIsFine) {
  const std::vector<std::string> hosts{"h0", "h0", "h0", "h0", "h1", "h1", "h1", "h1"};
  for (const paratorch::Layout& l : {paratorch::Layout{0, 1, 2}, paratorch::Layout{0, 2, 2}, paratorch::Layout{0, 1, 4},
                                     paratorch::Layout{0, 2, 1}}) {
    const paratorch::Layout layout = l.resolve(8);
    EXPECT_TRUE(paratorch::tp_groups_across_hosts(layout, hosts).empty()) << layout.to_string();
    EXPECT_EQ(paratorch::tp_placement_warning(layout, hosts, {0, 1, 2, 3, 4, 5, 6, 7}), "");
  }
  // tp = 8 over two hosts of 4: every group spans them.
  EXPECT_EQ(paratorch::tp_groups_across_hosts(paratorch::Layout{0, 1, 8}.resolve(8), hosts).size(), 1u);
}
