// tests/train/checkpoint_test.cpp — the trainer refuses a checkpoint written
// for another model, or one with no steps left to run, naming the key; and a
// checkpoint that cannot be read says what to pass to --resume.
#include "train/checkpoint.h"

#include <paratorch/errors.h>

#include <gtest/gtest.h>

#include "error_text.h"

#include <filesystem>

namespace paratorch::train {
namespace {

checkpoints::Checkpoint written_for(const Config& config, int64_t step) {
  checkpoints::Checkpoint c;
  c.step = step;
  c.config_toml = to_toml(config);
  return c;
}

using paratorch_test::error_of;

TEST(Checkpoint, AnotherModelOrNoStepsLeftIsRefused) {
  Config config;
  config.train.steps = 100;
  const checkpoints::Checkpoint c = written_for(config, 10);
  EXPECT_NO_THROW(require_compatible(c, config));
  config.model.d_model = 512;
  const std::string e = error_of([&] { require_compatible(c, config); });
  EXPECT_NE(e.find("d_model = 256 there, 512 here"), std::string::npos) << e;
  config.model.d_model = 256;
  config.train.steps = 10;
  EXPECT_NE(error_of([&] { require_compatible(c, config); }).find("nothing left to run"), std::string::npos);
}

TEST(Checkpoint, AnUnreadableOneSaysWhatToPassToResume) {
  const auto nowhere = std::filesystem::temp_directory_path() / "paratorch_ckpt_test_no_such_folder";
  std::filesystem::remove_all(nowhere);
  const std::string e = error_of([&] { read_checkpoint_to_resume(nowhere.string()); });
  EXPECT_NE(e.find("no such folder"), std::string::npos) << e;
  EXPECT_NE(e.find("pass another checkpoint to --resume"), std::string::npos) << e;
}

}  // namespace
}  // namespace paratorch::train
