// tests/train/config_test.cpp — the TOML config: defaults, round trips through
// to_toml, --set overrides, every error class, and the shipped example configs.
#include "train/config.h"

#include <paratorch/errors.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

namespace paratorch::train {
namespace {

// The UsageError message of `action`, or "" when it does not throw one.
template <class Action>
std::string usage_error_of(Action action) {
  try {
    action();
  } catch (const UsageError& e) {
    return e.what();
  }
  return "";
}

std::string config_error_of(const std::string& toml_text, const std::vector<std::string>& sets = {}) {
  return usage_error_of([&] { config_from_string(toml_text, sets); });
}

// A config where every key differs from its default and the whole still validates.
Config config_with_every_key_changed() {
  Config c;
  c.model.name = "mlp";
  c.model.n_layers = 3;
  c.model.d_model = 48;
  c.model.n_heads = 6;
  c.model.seq_len = 17;
  c.model.vocab_size = 300;
  c.model.d_in = 12;
  c.model.n_classes = 5;
  c.model.n_users = 77;
  c.model.n_items = 55;
  c.model.n_factors = 8;
  c.data = {"synthetic", 96};
  c.parallel.dp = 3;
  c.parallel.pp = 2;
  c.parallel.tp = 2;
  c.parallel.sequence_parallel = true;
  c.parallel.zero = 3;
  c.parallel.zero_release_memory = true;
  c.parallel.schedule = "interleaved";
  c.parallel.microbatches = 8;
  c.parallel.virtual_stages = 2;
  c.parallel.partition = "2,5";
  c.parallel.activation_checkpointing = true;
  c.parallel.bucket_mb = 12.5;
  c.parallel.mode = "ps";
  c.parallel.servers = 2;
  c.parallel.staleness = -1;
  c.parallel.compression = "fp16";  // agrees with reduce_precision below
  c.parallel.powersgd_rank = 3;
  c.parallel.powersgd_start_step = 4;
  c.parallel.onebit_freeze_step = 6;
  c.optim = {"sgd", 0.0123, 0.0, 0, 0.1 + 0.2};
  c.train = {7, 9876543210123LL, 3, "runs/a \"quoted\" \\ dir", 5, 2, "bf16", 512.0, 100, "fp16"};
  c.comm = {"mpi", 12.25};
  return c;
}

TEST(Config, EmptyTextGivesTheDesignDefaults) {
  const Config c = config_from_string("");
  EXPECT_EQ(c, Config{});
  EXPECT_EQ(c.model.name, "gpt");
  EXPECT_EQ(c.model.n_layers, 4);
  EXPECT_EQ(c.model.d_model, 256);
  EXPECT_EQ(c.model.seq_len, 128);
  EXPECT_EQ(c.data.source, "kjv");
  EXPECT_EQ(c.data.global_batch, 32);
  EXPECT_EQ(c.parallel.dp, 0);
  EXPECT_EQ(c.parallel.schedule, "1f1b");
  EXPECT_EQ(c.parallel.bucket_mb, 25.0);
  EXPECT_EQ(c.parallel.mode, "sync");
  EXPECT_EQ(c.optim.name, "adamw");
  EXPECT_DOUBLE_EQ(c.optim.lr, 3e-4);
  EXPECT_DOUBLE_EQ(c.optim.weight_decay, 0.1);
  EXPECT_EQ(c.optim.warmup_steps, 10);
  EXPECT_EQ(c.train.steps, 100);
  EXPECT_EQ(c.train.seed, 1234);
  EXPECT_EQ(c.train.out_dir, "runs/default");
  EXPECT_EQ(c.train.precision, "fp32");
  EXPECT_EQ(c.comm.backend, "auto");
  EXPECT_EQ(c.comm.timeout_s, 300.0);
}

TEST(Config, DesignDocumentBlockEqualsTheDefaults) {
  const Config c = config_from_string(R"(
[model]
name = "gpt"
n_layers = 4
d_model = 256
n_heads = 4
seq_len = 128
vocab_size = 256
d_in = 784
n_classes = 10
[data]
source = "kjv"
global_batch = 32
[parallel]
dp = "auto"
pp = 1
tp = 1
zero = 0
schedule = "1f1b"
microbatches = 1
virtual_stages = 1
bucket_mb = 25
mode = "sync"
servers = 1
staleness = 0
[optim]
name = "adamw"
lr = 3e-4
weight_decay = 0.1
warmup_steps = 10
grad_clip = 1.0
[train]
steps = 100
seed = 1234
log_every = 10
out_dir = "runs/default"
checkpoint_every = 0
threads_per_rank = 0
precision = "fp32"
[comm]
backend = "auto"
timeout_s = 300
)");
  EXPECT_EQ(c, Config{});
}

TEST(Config, DefaultsRoundTripThroughToToml) {
  const std::string text = to_toml(Config{});
  EXPECT_NE(text.find("dp = \"auto\""), std::string::npos) << text;
  EXPECT_NE(text.find("lr = 0.0003\n"), std::string::npos) << text;
  EXPECT_NE(text.find("bucket_mb = 25.0\n"), std::string::npos) << text;
  EXPECT_EQ(config_from_string(text), Config{});
}

TEST(Config, EveryKeyRoundTripsThroughAFile) {
  const Config changed = config_with_every_key_changed();
  changed.validate();
  const std::string text = to_toml(changed);
  for (const auto& info : config_keys())
    EXPECT_EQ(text.find("\n" + info.key + " = " + info.default_value + "\n"), std::string::npos)
        << "[" << info.section << "] " << info.key << " still has its default in\n" << text;

  const auto path = std::filesystem::temp_directory_path() / "paratorch_config_roundtrip.toml";
  std::ofstream(path) << text;
  const Config loaded = load_config(path.string());
  std::filesystem::remove(path);
  EXPECT_EQ(loaded, changed) << text;
  EXPECT_EQ(to_toml(loaded), text);
}

// The "key = value" line of [section] in to_toml's output.
std::string toml_line_of(const std::string& text, const std::string& section, const std::string& key) {
  const auto start = text.find("\n" + key + " = ", text.find("[" + section + "]\n")) + 1;
  return text.substr(start, text.find('\n', start) - start);
}

std::string replace_toml_line(std::string text, const std::string& old_line, const std::string& new_line) {
  return text.replace(text.find("\n" + old_line + "\n") + 1, old_line.size(), new_line);
}

TEST(Config, EqualityNoticesEveryKey) {
  const Config defaults, changed = config_with_every_key_changed();
  const std::string default_text = to_toml(defaults), changed_text = to_toml(changed);
  for (const auto& info : config_keys()) {
    SCOPED_TRACE("[" + info.section + "] " + info.key);
    const std::string default_line = toml_line_of(default_text, info.section, info.key);
    const std::string changed_line = toml_line_of(changed_text, info.section, info.key);
    // Change the key alone on the defaults, or (when that alone does not
    // validate, e.g. model "mlp" with source "kjv") revert it alone on `changed`.
    const std::string one_changed = replace_toml_line(default_text, default_line, changed_line);
    if (usage_error_of([&] { config_from_string(one_changed); }).empty())
      EXPECT_NE(config_from_string(one_changed), defaults);
    else
      EXPECT_NE(config_from_string(replace_toml_line(changed_text, changed_line, default_line)), changed);
  }
}

TEST(Config, IntegersAreAcceptedForNumbers) {
  const Config c = config_from_string("[optim]\nlr = 1\ngrad_clip = 0\n[comm]\ntimeout_s = 60\n");
  EXPECT_EQ(c.optim.lr, 1.0);
  EXPECT_EQ(c.optim.grad_clip, 0.0);
  EXPECT_EQ(c.comm.timeout_s, 60.0);
}

TEST(Config, DpIsAutoOrAPositiveInteger) {
  EXPECT_EQ(config_from_string("[parallel]\ndp = \"auto\"\n").parallel.dp, 0);
  EXPECT_EQ(config_from_string("[parallel]\ndp = 4\n").parallel.dp, 4);
  EXPECT_EQ(config_from_string("", {"parallel.dp=auto"}).parallel.dp, 0);
  EXPECT_EQ(config_from_string("[parallel]\ndp = 2\n", {"parallel.dp=\"auto\""}).parallel.dp, 0);
  EXPECT_NE(config_error_of("[parallel]\ndp = 0\n")
                .find("[parallel] dp must be \"auto\" or an integer >= 1, got integer 0"),
            std::string::npos);
  EXPECT_NE(config_error_of("[parallel]\ndp = \"all\"\n").find("got string \"all\""), std::string::npos);
}

// docs/config.md spells "fully asynchronous" as -1 or "inf".
TEST(Config, StalenessIsAnIntegerOrInf) {
  EXPECT_EQ(config_from_string("[parallel]\nstaleness = \"inf\"\n").parallel.staleness, -1);
  EXPECT_EQ(config_from_string("", {"parallel.staleness=inf"}).parallel.staleness, -1);
  EXPECT_EQ(config_from_string("[parallel]\nstaleness = 3\n").parallel.staleness, 3);
  EXPECT_EQ(config_from_string("[parallel]\nstaleness = -1\n").parallel.staleness, -1);
  EXPECT_NE(config_error_of("[parallel]\nstaleness = \"infinite\"\n")
                .find("[parallel] staleness must be an integer >= -1 or \"inf\", got string \"infinite\""),
            std::string::npos);
}

TEST(Config, SetOverridesEachType) {
  const Config c = config_from_string("[optim]\nlr = 0.5\n",
                                      {"optim.lr=1e-3", "train.steps=7", "train.out_dir=runs/x",
                                       "optim.name=sgd", "parallel.bucket_mb=4", "train.seed=42",
                                       "data.source=\"my corpus.txt\"", "optim.weight_decay = 0.25"});
  EXPECT_DOUBLE_EQ(c.optim.lr, 1e-3);
  EXPECT_EQ(c.train.steps, 7);
  EXPECT_EQ(c.train.out_dir, "runs/x");
  EXPECT_EQ(c.optim.name, "sgd");
  EXPECT_EQ(c.parallel.bucket_mb, 4.0);
  EXPECT_EQ(c.train.seed, 42);
  EXPECT_EQ(c.data.source, "my corpus.txt");
  EXPECT_TRUE(c.data.is_text_file());
  EXPECT_EQ(c.optim.weight_decay, 0.25);
}

TEST(Config, SetKeepsBareTextForStringKeys) {
  const Config c = config_from_string("", {"train.out_dir=2024", "data.source=true",
                                           "train.out_dir=runs/a=b"});
  EXPECT_EQ(c.train.out_dir, "runs/a=b");
  EXPECT_EQ(c.data.source, "true");
  EXPECT_EQ(config_from_string("", {"train.out_dir=2024"}).train.out_dir, "2024");
}

TEST(Config, LaterSetWins) {
  EXPECT_EQ(config_from_string("", {"train.steps=3", "train.steps=9"}).train.steps, 9);
}

TEST(Config, UnknownSectionListsTheValidOnes) {
  for (const std::string text : {"[foo]\nx = 1\n", "[foo]\n", "foo = 1\n"})
    EXPECT_NE(config_error_of(text).find("paratorch: unknown config section [foo]; valid sections: "
                                         "model, data, parallel, optim, train, comm"),
              std::string::npos)
        << text;
  EXPECT_NE(config_error_of("", {"foo.x=1"}).find("unknown config section [foo]"), std::string::npos);
}

TEST(Config, UnknownKeyListsTheSectionsKeys) {
  EXPECT_NE(config_error_of("[optim]\nlrr = 1\n")
                .find("paratorch: unknown key 'lrr' in [optim]; valid keys: name, lr, weight_decay, "
                      "warmup_steps, grad_clip"),
            std::string::npos);
  EXPECT_NE(config_error_of("", {"optim.lrr=1"}).find("unknown key 'lrr' in [optim]"), std::string::npos);
  EXPECT_NE(config_error_of("[model.gpt]\nn_layers = 2\n").find("unknown key 'gpt' in [model]"),
            std::string::npos);
}

TEST(Config, PipelineKeys) {
  EXPECT_NE(config_error_of("[parallel]\nactivation_checkpointing = 1\n")
                .find("[parallel] activation_checkpointing must be a boolean, got integer 1"),
            std::string::npos);
  EXPECT_TRUE(config_from_string("", {"parallel.activation_checkpointing=true"}).parallel.activation_checkpointing);
  EXPECT_EQ(config_from_string("", {"parallel.partition=3,5"}).parallel.partition, "3,5");
  EXPECT_NE(config_error_of("[parallel]\npartition = \"fast\"\n")
                .find("[parallel] partition must be \"params\", \"time\" or a list of block indices like \"3,5\", got \"fast\""),
            std::string::npos);
}

TEST(Config, WrongTypesNameTheKeyAndTheValue) {
  EXPECT_NE(config_error_of("[optim]\nlr = \"fast\"\n")
                .find("paratorch: [optim] lr must be a number, got string \"fast\""),
            std::string::npos);
  EXPECT_NE(config_error_of("[train]\nsteps = 2.5\n").find("[train] steps must be an integer, got float 2.5"),
            std::string::npos);
  EXPECT_NE(config_error_of("[model]\nname = 3\n").find("[model] name must be a string, got integer 3"),
            std::string::npos);
  EXPECT_NE(config_error_of("[train]\nsteps = [1]\n").find("got an array"), std::string::npos);
  EXPECT_NE(config_error_of("[model]\nd_model = 9999999999\n")
                .find("[model] d_model must fit in 32 bits, got integer 9999999999"),
            std::string::npos);
  EXPECT_NE(config_error_of("model = 3\n").find("model must be a section ([model]), got integer 3"),
            std::string::npos);
}

TEST(Config, SetTypeErrorsNameTheSetArgument) {
  const std::string message = config_error_of("", {"optim.lr=fast"});
  EXPECT_NE(message.find("[optim] lr must be a number, got string \"fast\" (from --set optim.lr=fast)"),
            std::string::npos)
      << message;
}

TEST(Config, BadSetSyntaxNamesTheExpectedForm) {
  for (const std::string bad : {"optim.lr", "lr=1e-3", "=3", "optim=lr.3"})
    EXPECT_NE(config_error_of("", {bad}).find("--set expects section.key=value (e.g. --set optim.lr=1e-3), got '" +
                                              bad + "'"),
              std::string::npos)
        << bad;
}

TEST(Config, OutOfRangeValuesSayWhatIsValid) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"[parallel]\nzero = 5\n", "paratorch: [parallel] zero must be 0..3, got 5"},
      {"[parallel]\nschedule = \"zigzag\"\n",
       "[parallel] schedule must be one of gpipe, 1f1b, interleaved, zb-h1, zb-v, got \"zigzag\""},
      {"[parallel]\nmode = \"async\"\n", "[parallel] mode must be one of sync, ps, hogwild"},
      {"[parallel]\nstaleness = -2\n", "[parallel] staleness must be an integer >= -1 or \"inf\", got integer -2"},
      {"[parallel]\nvirtual_stages = 2\n", "[parallel] virtual_stages = 2 needs schedule \"interleaved\""},
      {"[parallel]\nbucket_mb = 0\n", "[parallel] bucket_mb must be a finite number > 0, got 0.0"},
      {"[optim]\nname = \"adam\"\n", "[optim] name must be one of adamw, sgd, got \"adam\""},
      {"[optim]\nlr = 0\n", "[optim] lr must be a finite number > 0, got 0.0"},
      {"[optim]\nlr = nan\n", "[optim] lr must be a finite number > 0, got nan"},
      {"[optim]\nweight_decay = -0.1\n", "[optim] weight_decay must be a finite number >= 0"},
      {"[train]\nsteps = 0\n", "[train] steps must be >= 1, got 0"},
      {"[train]\nprecision = \"fp8\"\n", "[train] precision must be one of fp32, bf16, fp16"},
      {"[train]\nout_dir = \"\"\n", "[train] out_dir must name a folder"},
      {"[train]\ninitial_loss_scale = 0\n", "[train] initial_loss_scale must be a finite number > 0, got 0.0"},
      {"[train]\nloss_scale_window = 0\n", "[train] loss_scale_window must be >= 1, got 0"},
      {"[train]\nreduce_precision = \"int8\"\n", "[train] reduce_precision must be one of fp32, bf16, fp16"},
      {"[comm]\nbackend = \"gloo\"\n", "[comm] backend must be one of auto, mpi, got \"gloo\""},
      {"[comm]\nbackend = \"nccl\"\n",
       "[comm] backend = \"nccl\" is not available in this build (MPI is the backend; CUDA tensors are staged "
       "through host memory); set backend = \"auto\" or \"mpi\""},
      {"[comm]\ntimeout_s = -1\n", "[comm] timeout_s must be a finite number > 0"},
      {"[data]\nglobal_batch = 0\n", "[data] global_batch must be >= 1, got 0"},
      {"[data]\nsource = \"\"\n", "[data] source must be one of kjv, fashion_mnist, synthetic, mf_synthetic"},
      {"[model]\nname = \"resnet\"\n", "[model] name must be one of gpt, mlp, cnn, mf, got \"resnet\""},
      {"[model]\nn_heads = 0\n", "[model] n_heads must be >= 1, got 0"},
      {"[model]\nd_model = 100\nn_heads = 3\n", "d_model = 100 must be divisible by n_heads = 3"},
  };
  for (const auto& [text, expected] : cases)
    EXPECT_NE(config_error_of(text).find(expected), std::string::npos)
        << text << "gave: " << config_error_of(text);
}

TEST(Config, DataSourceMustSuitTheModel) {
  EXPECT_NE(config_error_of("[model]\nname = \"mf\"\n")
                .find("[data] source \"kjv\" cannot feed model \"mf\"; it feeds gpt"),
            std::string::npos);
  EXPECT_NE(config_error_of("[data]\nsource = \"mf_synthetic\"\n").find("cannot feed model \"gpt\"; it feeds mf"),
            std::string::npos);
  EXPECT_NE(config_error_of("[model]\nname = \"cnn\"\nn_classes = 4\n[data]\nsource = \"fashion_mnist\"\n")
                .find("[model] n_classes must be 10 for fashion_mnist, got 4"),
            std::string::npos);
  EXPECT_NE(config_error_of("[model]\nname = \"mlp\"\nd_in = 100\n[data]\nsource = \"fashion_mnist\"\n")
                .find("[model] d_in must be 784"),
            std::string::npos);
  EXPECT_NE(config_error_of("[model]\nvocab_size = 100\n").find("vocab_size must be >= 256 for byte-level text"),
            std::string::npos);
  EXPECT_EQ(config_from_string("[model]\nname = \"cnn\"\n[data]\nsource = \"fashion_mnist\"\n").model.name, "cnn");
}

TEST(Config, MissingFileNamesThePath) {
  const std::string message = usage_error_of([] { load_config("/nonexistent/run.toml"); });
  EXPECT_NE(message.find("config file '/nonexistent/run.toml' does not exist"), std::string::npos) << message;
  const std::string folder = usage_error_of([] { load_config(std::filesystem::temp_directory_path().string()); });
  EXPECT_NE(folder.find("is not a regular file"), std::string::npos) << folder;
}

TEST(Config, ParseErrorsGiveFileLineAndColumn) {
  const auto path = std::filesystem::temp_directory_path() / "paratorch_config_broken.toml";
  std::ofstream(path) << "[optim]\nlr = 1e-3\nname = adamw\n";
  const std::string message = usage_error_of([&] { load_config(path.string()); });
  std::filesystem::remove(path);
  EXPECT_NE(message.find("bad TOML in config file '" + path.string() + "' at line 3, column 8"),
            std::string::npos)
      << message;
}

TEST(Config, ReferenceListsEveryKeyWithItsDefault) {
  const std::string reference = config_reference();
  for (const auto& info : config_keys())
    EXPECT_NE(reference.find("  " + info.key + " = " + info.default_value + " "), std::string::npos)
        << info.key;
  EXPECT_NE(reference.find("--set section.key=value"), std::string::npos);
}

TEST(Config, EveryExampleConfigLoads) {
  const auto folder = std::filesystem::path(PARATORCH_SOURCE_DIR) / "examples" / "configs";
  std::set<std::string> models;
  for (const auto& entry : std::filesystem::directory_iterator(folder)) {
    if (entry.path().extension() != ".toml") continue;
    SCOPED_TRACE(entry.path().string());
    const Config c = load_config(entry.path().string());
    models.insert(c.model.name);
    EXPECT_EQ(config_from_string(to_toml(c)), c);
  }
  EXPECT_EQ(models, (std::set<std::string>{"gpt", "mlp", "cnn", "mf"}));
}

TEST(Config, DocsDescribeEveryKeyInItsSection) {
  std::ifstream in(std::filesystem::path(PARATORCH_SOURCE_DIR) / "docs" / "config.md");
  const std::string docs((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_FALSE(docs.empty());
  for (const auto& info : config_keys()) {
    const auto begin = docs.find("## [" + info.section + "]");
    ASSERT_NE(begin, std::string::npos) << info.section;
    const auto end = docs.find("\n## ", begin + 1);
    const auto row = docs.find("| `" + info.key + "` |", begin);
    EXPECT_TRUE(row != std::string::npos && row < end) << "[" << info.section << "] " << info.key;
  }
}

}  // namespace
}  // namespace paratorch::train
