// tests/cli/args_test.cpp — strict flag parsing and the mpirun command line.
#include <gtest/gtest.h>

#include "cli/args.h"
#include "cli/launcher.h"
#include <paratorch/errors.h>

using paratorch::cli::Args;

namespace {
const std::vector<paratorch::cli::FlagSpec> kFlags = {{"steps", "K", ""}, {"help", "", ""}, {"set", "K=V", ""}};
}

TEST(Args, ParsesBothFormsAndRepeats) {
  Args a("verify", kFlags, {"--steps", "5", "--set=a.b=1", "--set", "c.d=2", "--help"});
  EXPECT_EQ(a.get_int("steps", 0), 5);
  EXPECT_TRUE(a.has("help"));
  EXPECT_EQ(a.all("set"), (std::vector<std::string>{"a.b=1", "c.d=2"}));
}

TEST(Args, UnknownFlagListsValidOnes) {
  try {
    Args("verify", kFlags, {"--stpes", "5"});
    FAIL();
  } catch (const paratorch::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("unknown flag --stpes; valid flags: --steps, --help, --set"),
              std::string::npos) << e.what();
  }
  EXPECT_THROW(Args("verify", kFlags, {"--steps"}), paratorch::UsageError);
  EXPECT_THROW(Args("verify", kFlags, {"--steps", "x"}).get_int("steps", 0), paratorch::UsageError);
}

TEST(Launcher, MpirunCommandBindsNothingAndCarriesArgs) {
  auto cmd = paratorch::cli::mpirun_command(2, "/bin/paratorch", {"verify", "--model", "mlp"});
  EXPECT_EQ(cmd[0], "mpirun");
  EXPECT_EQ(cmd[2], "2");
  EXPECT_NE(std::find(cmd.begin(), cmd.end(), "none"), cmd.end());
  EXPECT_EQ(cmd[cmd.size() - 3], "verify");
}
