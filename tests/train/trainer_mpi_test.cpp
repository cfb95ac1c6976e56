// tests/train/trainer_mpi_test.cpp — the training loop on 2 ranks: the loss
// falls, the outputs docs/training.md lists appear, and a resumed run ends bit-for-bit
// where an uninterrupted one does. Run under mpirun by CTest.
#include "train/checkpoint.h"
#include "train/trainer.h"

#include "formats/atomic_file.h"
#include "mpi_test_env.h"
#include <paratorch/errors.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>

namespace paratorch::train {
namespace {
namespace fs = std::filesystem;

// A folder every rank agrees on, emptied by rank 0 before use.
std::string shared_scratch(const std::string& name) {
  const fs::path dir = fs::path(PARATORCH_TEST_SCRATCH) / name;
  if (test_world().rank() == 0) {
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  test_world().comm()->barrier();
  return dir.string();
}

Config tiny_gpt(const std::string& out_dir, const std::string& text_file) {
  Config c;
  c.model.name = "gpt";
  c.model.n_layers = 1;
  c.model.d_model = 32;
  c.model.n_heads = 2;
  c.model.seq_len = 16;
  c.data.source = text_file;
  c.data.global_batch = 8;
  c.optim.lr = 3e-3;
  c.optim.warmup_steps = 2;
  c.train.steps = 6;
  c.train.log_every = 1;
  c.train.checkpoint_every = 3;
  c.train.out_dir = out_dir;
  c.validate();
  return c;
}

std::string write_text_corpus(const std::string& dir) {
  const std::string path = dir + "/corpus.txt";
  if (test_world().rank() == 0) {
    std::string text;
    for (int i = 0; i < 400; ++i) text += "In the beginning was the word, and the word was " + std::to_string(i % 7) + ".\n";
    formats::write_file_atomic(path, text);
  }
  test_world().comm()->barrier();
  return path;
}

// A small mlp on synthetic (learnable) data.
Config small_mlp(int n_layers, int d_model, int d_in, int global_batch, const std::string& out_dir) {
  Config c;
  c.model.name = "mlp";
  c.model.n_layers = n_layers;
  c.model.d_model = d_model;
  c.model.d_in = d_in;
  c.data.source = "synthetic";
  c.data.global_batch = global_batch;
  c.train.out_dir = out_dir;
  return c;
}

TEST(Trainer, MlpLossFallsAndOutputsAppear) {
  const std::string out = shared_scratch("mlp");
  Config c = small_mlp(2, 32, 16, 32, out);
  c.optim.lr = 3e-3;
  c.train.steps = 40;
  c.train.log_every = 10;
  c.validate();
  Trainer trainer(test_world(), c);
  const TrainResult r = trainer.run();
  EXPECT_EQ(r.steps, 40);
  EXPECT_EQ(r.unit, "samples/s");
  EXPECT_GT(r.throughput, 0);
  if (test_world().rank() != 0) return;
  std::ifstream metrics(out + "/metrics.jsonl");
  std::string first, line, last;
  std::getline(metrics, first);
  int lines = 1;
  while (std::getline(metrics, line)) last = line, ++lines;
  EXPECT_EQ(lines, 5);  // step 1, then every 10 steps
  const double first_loss = std::stod(first.substr(first.find("\"loss\":") + 7));
  EXPECT_LT(r.final_loss, 0.7 * first_loss) << first;
  EXPECT_NE(last.find("\"val_accuracy\""), std::string::npos) << last;
  EXPECT_NE(formats::read_file_bytes(out + "/loss.svg").find("validation"), std::string::npos);
  const std::string trace = formats::read_file_bytes(out + "/trace.json");
  for (const char* event : {"\"forward\"", "\"backward\"", "\"optimizer\"", "all_reduce"})
    EXPECT_NE(trace.find(event), std::string::npos) << event;
  EXPECT_EQ(read_checkpoint(out).step, 40);  // the final checkpoint
  EXPECT_NE(r.summary_line().find("train: steps=40 final_loss="), std::string::npos);
}

TEST(Trainer, ResumeContinuesBitForBit) {
  const std::string dir = shared_scratch("resume");
  const std::string corpus = write_text_corpus(dir);
  // Uninterrupted: 6 steps, checkpoints at 3 and 6.
  Trainer(test_world(), tiny_gpt(dir + "/whole", corpus)).run();
  // Interrupted after step 3: a new run resumes from the step-3 checkpoint.
  Trainer(test_world(), tiny_gpt(dir + "/resumed", corpus)).run(dir + "/whole/checkpoints/step-000003");
  const Checkpoint whole = read_checkpoint(dir + "/whole"), resumed = read_checkpoint(dir + "/resumed");
  ASSERT_EQ(whole.step, 6);
  ASSERT_EQ(resumed.step, 6);
  ASSERT_EQ(whole.model.size(), resumed.model.size());
  EXPECT_TRUE(whole.model.count("transformer.h.0.attn.c_attn.weight")) << "nanoGPT names in model.safetensors";
  for (const auto& [name, t] : whole.model) EXPECT_TRUE(torch::equal(t, resumed.model.at(name))) << name;
  for (const auto& [name, t] : whole.optimizer) EXPECT_TRUE(torch::equal(t, resumed.optimizer.at(name))) << name;
}

// Gradient accumulation over micro-batches (DDP no_sync, one reduction per
// step) computes the same step as the whole per-replica batch at once.
TEST(Trainer, MicrobatchesAccumulateToTheSameStep) {
  const std::string dir = shared_scratch("microbatches");
  std::map<int, Checkpoint> finals;
  for (int m : {1, 4}) {
    Config c = small_mlp(1, 16, 8, 16, dir + "/m" + std::to_string(m));
    c.parallel.microbatches = m;
    c.optim.name = "sgd";
    c.optim.lr = 0.05;
    c.train.steps = 3;
    Trainer(test_world(), c).run();
    finals[m] = read_checkpoint(c.train.out_dir);
  }
  for (const auto& [name, t] : finals[1].model)
    EXPECT_TRUE(torch::allclose(t, finals[4].model.at(name), 1e-5, 1e-6)) << name;
}

TEST(Trainer, ResumeRefusesAnotherModel) {
  const std::string dir = shared_scratch("mismatch");
  const std::string corpus = write_text_corpus(dir);
  Config c = tiny_gpt(dir + "/a", corpus);
  c.train.steps = 2;
  Trainer(test_world(), c).run();
  Config other = tiny_gpt(dir + "/b", corpus);
  other.model.d_model = 64;
  EXPECT_THROW(Trainer(test_world(), other).run(dir + "/a"), UsageError);
}

// A tensor-parallel checkpoint holds whole tensors (parameters and optimizer
// state), so a tp=2 run resumed at tp=1 (dp=2) continues the same training.
TEST(Trainer, TensorParallelCheckpointResumesInAnotherLayout) {
  const std::string dir = shared_scratch("tp_resume");
  const std::string corpus = write_text_corpus(dir);
  Config tp2 = tiny_gpt(dir + "/tp2", corpus);
  tp2.parallel.tp = 2;
  tp2.parallel.dp = 1;
  tp2.optim.name = "sgd";  // linear in the gradients: layouts agree to rounding
  Trainer(test_world(), tp2).run();
  Config dp2 = tiny_gpt(dir + "/dp2", corpus);
  dp2.optim.name = "sgd";
  Trainer(test_world(), dp2).run(dir + "/tp2/checkpoints/step-000003");
  const Checkpoint a = read_checkpoint(dir + "/tp2"), b = read_checkpoint(dir + "/dp2");
  ASSERT_EQ(b.step, 6);
  ASSERT_EQ(a.model.size(), b.model.size());
  for (const auto& [name, t] : a.model) {
    ASSERT_EQ(t.sizes(), b.model.at(name).sizes()) << name << ": whole tensors in both checkpoints";
    EXPECT_TRUE(torch::allclose(t, b.model.at(name), 1e-4, 1e-6)) << name;
  }
}

}  // namespace
}  // namespace paratorch::train
