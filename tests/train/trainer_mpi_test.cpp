// tests/train/trainer_mpi_test.cpp — the training loop on 2 ranks: the loss
// falls, the outputs docs/training.md lists appear, gradient accumulation
// trains as one process does, and a resumed run ends bit-for-bit where an
// uninterrupted one does. Run under mpirun by CTest.
#include "checkpoint/step_folder.h"
#include "train/trainer.h"

#include "data/dataset.h"
#include "formats/atomic_file.h"
#include "models/model.h"
#include "parallel/grad_clip.h"
#include "optim/lr_schedule.h"
#include "optim/optimizer.h"
#include "mpi_test_env.h"
#include "one_process.h"
#include <paratorch/errors.h>
#include <paratorch/sampler.h>

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
  EXPECT_EQ(checkpoints::read_checkpoint(out).step, 40);  // the final checkpoint
  EXPECT_NE(r.summary_line().find("train: steps=40 final_loss="), std::string::npos);
}

TEST(Trainer, ResumeContinuesBitForBit) {
  const std::string dir = shared_scratch("resume");
  const std::string corpus = write_text_corpus(dir);
  // Uninterrupted: 6 steps, checkpoints at 3 and 6.
  Trainer(test_world(), tiny_gpt(dir + "/whole", corpus)).run();
  // Interrupted after step 3: a new run resumes from the step-3 checkpoint.
  Trainer(test_world(), tiny_gpt(dir + "/resumed", corpus)).run(dir + "/whole/checkpoints/step-000003");
  const checkpoints::Checkpoint whole = checkpoints::read_checkpoint(dir + "/whole"),
                                resumed = checkpoints::read_checkpoint(dir + "/resumed");
  ASSERT_EQ(whole.step, 6);
  ASSERT_EQ(resumed.step, 6);
  ASSERT_EQ(whole.model.size(), resumed.model.size());
  EXPECT_TRUE(whole.model.count("transformer.h.0.attn.c_attn.weight")) << "nanoGPT names in model.safetensors";
  for (const auto& [name, t] : whole.model) EXPECT_TRUE(torch::equal(t, resumed.model.at(name))) << name;
  // AdamW: exp_avg and exp_avg_sq of every parameter (and the step count).
  ASSERT_GE(whole.optimizer.size(), 2 * whole.model.size());
  ASSERT_EQ(whole.optimizer.size(), resumed.optimizer.size());
  for (const auto& [name, t] : whole.optimizer) {
    ASSERT_TRUE(resumed.optimizer.count(name)) << name;
    EXPECT_TRUE(torch::equal(t, resumed.optimizer.at(name))) << name;
  }
}

// The value of "key" on every line of metrics.jsonl.
std::vector<double> logged(const std::string& out_dir, const std::string& key) {
  std::ifstream metrics(out_dir + "/metrics.jsonl");
  std::vector<double> values;
  const std::string field = "\"" + key + "\":";
  for (std::string line; std::getline(metrics, line);) {
    const auto at = line.find(field);
    if (at != std::string::npos) values.push_back(std::stod(line.substr(at + field.size())));
  }
  return values;
}

// Gradient accumulation over m micro-batches (DDP no_sync, one reduction per
// step) trains as one process does on the whole global batch: the logged
// losses and pre-clip gradient norms of every step and the final parameters
// within 1e-5. Plain SGD (momentum, linear in the gradient), no weight
// decay, no clip: a gradient off by a constant factor (1/m lost, a dp sum
// instead of a mean) changes the update, which a binding clip would hide.
TEST(Trainer, MicrobatchesAccumulateAsOneProcessFullBatch) {
  const std::string dir = shared_scratch("microbatches");
  for (int m : {1, 4}) {
    Config c = small_mlp(1, 16, 8, 16, dir + "/m" + std::to_string(m));
    c.parallel.microbatches = m;
    c.optim.name = "sgd";
    c.optim.lr = 0.05;
    c.optim.weight_decay = 0;
    c.optim.grad_clip = 0;
    c.train.steps = 3;
    c.train.log_every = 1;
    Trainer(test_world(), c).run();
    const optim::LrSchedule schedule{c.optim.lr, c.optim.warmup_steps, c.train.steps};  // as the trainer
    const auto ref = reference::one_process(c, c.train.steps, [&](int s) { return schedule.at(s); });
    const std::string what = "microbatches=" + std::to_string(m);
    const checkpoints::Checkpoint got = checkpoints::read_checkpoint(c.train.out_dir);
    ASSERT_EQ(got.step, 3) << what;
    ASSERT_FALSE(ref.params.empty());
    ASSERT_EQ(got.model.size(), ref.params.size()) << what;
    for (const auto& [name, t] : ref.params) {
      ASSERT_TRUE(got.model.count(name)) << what << " " << name;
      EXPECT_TRUE(torch::allclose(got.model.at(name), t, 1e-5, 1e-7)) << what << " " << name;
    }
    if (test_world().rank() != 0) continue;  // rank 0 writes the metrics
    const auto losses = logged(c.train.out_dir, "loss"), norms = logged(c.train.out_dir, "grad_norm");
    ASSERT_EQ(losses.size(), 3u) << what;
    ASSERT_EQ(norms.size(), 3u) << what;
    for (size_t s = 0; s < 3; ++s) {
      EXPECT_NEAR(losses[s], ref.losses[s], 1e-5 * ref.losses[s]) << what << " loss, step " << s;
      EXPECT_NEAR(norms[s], ref.grad_norms[s], 1e-5 * ref.grad_norms[s]) << what << " grad norm, step " << s;
    }
  }
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
  const checkpoints::Checkpoint a = checkpoints::read_checkpoint(dir + "/tp2"),
                                b = checkpoints::read_checkpoint(dir + "/dp2");
  ASSERT_EQ(b.step, 6);
  ASSERT_EQ(a.model.size(), b.model.size());
  for (const auto& [name, t] : a.model) {
    ASSERT_EQ(t.sizes(), b.model.at(name).sizes()) << name << ": whole tensors in both checkpoints";
    EXPECT_TRUE(torch::allclose(t, b.model.at(name), 1e-4, 1e-6)) << name;
  }
}

}  // namespace
}  // namespace paratorch::train
