// tests/layout/layout_test.cpp — parsing, resolution and Megatron rank order.
#include <gtest/gtest.h>

#include <paratorch/errors.h>
#include <paratorch/layout.h>

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
