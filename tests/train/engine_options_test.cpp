// tests/train/engine_options_test.cpp — the config edge: keys become typed
// engine options, and an engine's message about an option field reaches the
// CLI user as the config key to edit.
#include "train/engine_options.h"

#include <paratorch/ddp.h>
#include <paratorch/errors.h>
#include <paratorch/sampler.h>

#include <gtest/gtest.h>

namespace paratorch::train {
namespace {

std::string usage_error(const std::function<void()>& work) {
  try {
    work();
  } catch (const UsageError& e) {
    return e.what();
  }
  return "no error";
}

TEST(EngineOptions, KeysBecomeTypedOptions) {
  Config c;
  c.train.precision = "bf16";
  c.train.reduce_precision = "fp16";
  c.parallel.schedule = "interleaved";
  c.parallel.zero = 2;
  const zero::ZeroEngineOptions z = zero_options(c);
  EXPECT_EQ(z.compute_dtype, torch::kBFloat16);
  EXPECT_EQ(z.reduce_dtype, torch::kHalf);
  EXPECT_EQ(z.stage, 2);
  const pipeline::PipelineEngineOptions p = pipeline_options(c);
  EXPECT_EQ(p.schedule, PipelineSchedule::kInterleaved);
  EXPECT_EQ(p.compute_dtype, torch::kBFloat16);
  EXPECT_EQ(p.reduce_dtype, torch::kHalf);
  c.parallel.schedule = "gpipe";
  EXPECT_EQ(pipeline_options(c).schedule, PipelineSchedule::kGPipe);
}

TEST(EngineOptions, EnginesNameFieldsAndTheEdgeNamesKeys) {
  zero::ZeroEngineOptions z;
  z.global_batch = 32, z.microbatches = 3;
  const std::string field = usage_error([&] { z.validate(2); });
  EXPECT_NE(field.find("ZeroEngineOptions::microbatches = 3 must divide the per-replica batch 16"), std::string::npos)
      << field;
  EXPECT_EQ(field.find("[parallel]"), std::string::npos) << field;
  const std::string key = in_config_keys(field);
  EXPECT_NE(key.find("[parallel] microbatches = 3 must divide the per-replica batch 16"), std::string::npos) << key;
  EXPECT_EQ(key.find("ZeroEngineOptions"), std::string::npos) << key;

  pipeline::PipelineEngineOptions p;
  p.compute_dtype = torch::kDouble;
  const std::string dtype = usage_error([&] { p.validate(Layout{1, 2, 1}); });
  EXPECT_NE(dtype.find("PipelineEngineOptions::compute_dtype = Double is no training dtype"), std::string::npos)
      << dtype;
  EXPECT_NE(in_config_keys(dtype).find("[train] precision = Double"), std::string::npos);
}

TEST(EngineOptions, LibraryFieldsTheCliShowsAreTranslated) {
  const std::string sampler = usage_error([] { DistributedSampler(10, 0, 4); });
  EXPECT_NE(sampler.find("DistributedSampler::global_batch = 10"), std::string::npos) << sampler;
  EXPECT_EQ(in_config_keys(sampler),
            "paratorch: [data] global_batch = 10 must be a positive multiple of dp = 4 (for example 8 or 12)");
  DDPOptions ddp;
  ddp.bucket_mb = 0;
  EXPECT_NE(in_config_keys(usage_error([&] { ddp.validate(); })).find("[parallel] bucket_mb must be > 0"),
            std::string::npos);
}

TEST(EngineOptions, EveryFieldOccurrenceIsTranslated) {
  EXPECT_EQ(in_config_keys("paratorch: PsEngineOptions::servers = 3 and PsEngineOptions::servers again; "
                           "OtherOptions::servers stays"),
            "paratorch: [parallel] servers = 3 and [parallel] servers again; OtherOptions::servers stays");
}

}  // namespace
}  // namespace paratorch::train
