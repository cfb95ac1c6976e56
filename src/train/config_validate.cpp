// src/train/config_validate.cpp — the validation rules of every config
// section (config.h): each error names the key to change and its allowed
// values.
#include "train/config.h"

#include "models/registry.h"
#include "parallel/pipeline/schedule.h"
#include "train/config_words.h"
#include "train/engine_options.h"

#include <paratorch/errors.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

namespace paratorch::train {
using namespace config_words;
namespace {

void require_config_at_least(const char* section, const char* key, int64_t value, int64_t min) {
  if (value < min)
    throw config_key_error(section, key, "must be >= " + std::to_string(min) + ", got " +
                                             std::to_string(value));
}

void require_config_between(const char* section, const char* key, int value, int lo, int hi) {
  if (value < lo || value > hi)
    throw config_key_error(section, key, "must be " + std::to_string(lo) + ".." +
                                             std::to_string(hi) + ", got " + std::to_string(value));
}

void require_config_positive(const char* section, const char* key, double value) {
  if (!(std::isfinite(value) && value > 0))
    throw config_key_error(section, key, "must be a finite number > 0, got " + format_toml_float(value));
}

void require_config_non_negative(const char* section, const char* key, double value) {
  if (!(std::isfinite(value) && value >= 0))
    throw config_key_error(section, key, "must be a finite number >= 0, got " + format_toml_float(value));
}

void require_config_choice(const char* section, const char* key, const std::string& value,
                           const std::vector<std::string>& choices) {
  if (!config_list_has(choices, value))
    throw config_key_error(section, key, "must be one of " + join_config_words(choices, ", ") +
                                             ", got " + quote_toml_string(value));
}

// Which models a data source can feed.
std::vector<std::string> config_models_fed_by(const DataSection& data) {
  if (data.source == "mf_synthetic") return {"mf"};
  if (data.source == "fashion_mnist") return {"mlp", "cnn"};
  if (data.source == "synthetic") return {"gpt", "mlp"};
  return {"gpt"};  // kjv and text files: byte-level text
}

void require_config_model_suits_data(const ModelSection& model, const DataSection& data) {
  const auto fed = config_models_fed_by(data);
  if (!config_list_has(fed, model.name))
    throw UsageError("paratorch: [data] source " + quote_toml_string(data.source) +
                     " cannot feed model " + quote_toml_string(model.name) + "; it feeds " +
                     join_config_words(fed, ", ") + " (change [model] name or [data] source)");
  const bool byte_text = data.source == "kjv" || data.is_text_file();
  if (byte_text && model.vocab_size < 256)
    throw config_key_error("model", "vocab_size", "must be >= 256 for byte-level text (source " +
                                                      quote_toml_string(data.source) + "), got " +
                                                      std::to_string(model.vocab_size));
  if (data.source != "fashion_mnist") return;
  if (model.n_classes != 10)
    throw config_key_error("model", "n_classes", "must be 10 for fashion_mnist, got " +
                                                     std::to_string(model.n_classes));
  // A model of feature vectors (mlp) reads each image flattened to 28x28 features.
  if (models::model_family(model.name).input == models::ModelInput::kFeatures && model.d_in != 784)
    throw config_key_error("model", "d_in", "must be 784 (28x28 pixels) for fashion_mnist, got " +
                                                std::to_string(model.d_in));
}

}  // namespace

void ModelSection::validate() const {
  require_config_choice("model", "name", name, models::model_family_names());
  const std::pair<const char*, int> sizes[] = {
      {"n_layers", n_layers},     {"d_model", d_model},     {"n_heads", n_heads},
      {"seq_len", seq_len},       {"vocab_size", vocab_size}, {"d_in", d_in},
      {"n_classes", n_classes},   {"n_users", n_users},     {"n_items", n_items},
      {"n_factors", n_factors}};
  for (const auto& [key, value] : sizes) require_config_at_least("model", key, value, 1);
  try {
    models::ModelConfig::validate();
  } catch (const UsageError& e) {
    throw UsageError(in_config_keys(e.what()));  // the model names its fields; the config user edits keys
  }
}

bool DataSection::is_text_file() const { return !config_list_has(kConfigBundledSources, source); }

void DataSection::validate() const {
  if (source.empty())
    throw config_key_error("data", "source", "must be one of " +
                                                 join_config_words(kConfigBundledSources, ", ") +
                                                 " or a text file's path, got \"\"");
  require_config_at_least("data", "global_batch", global_batch, 1);
}

void ParallelSection::validate() const {
  if (dp < 0)
    throw config_key_error("parallel", "dp", "must be \"auto\" or >= 1, got " + std::to_string(dp));
  require_config_at_least("parallel", "pp", pp, 1);
  require_config_at_least("parallel", "tp", tp, 1);
  require_config_between("parallel", "zero", zero, 0, 3);
  if (zero_release_memory && zero != 3)
    throw config_key_error("parallel", "zero_release_memory",
                           "= true applies to zero = 3 only (got zero = " + std::to_string(zero) +
                               "); set zero = 3 or drop zero_release_memory");
  require_config_choice("parallel", "schedule", schedule, pipeline::schedule_names());
  require_config_at_least("parallel", "microbatches", microbatches, 1);
  require_config_at_least("parallel", "virtual_stages", virtual_stages, 1);
  const pipeline::ScheduleKind& kind = pipeline::schedule_kind(schedule);
  if (kind.v_shape && virtual_stages > 2)
    throw config_key_error("parallel", "virtual_stages",
                           "= " + std::to_string(virtual_stages) + ": schedule " + quote_toml_string(schedule) +
                               " places exactly 2 chunks per rank in a V; set virtual_stages = 1 or 2");
  if (virtual_stages > 1 && !kind.interleaves_chunks && !kind.v_shape)
    throw config_key_error("parallel", "virtual_stages",
                           "= " + std::to_string(virtual_stages) +
                               " needs schedule \"interleaved\", got " + quote_toml_string(schedule) +
                               "; set virtual_stages = 1 or schedule = \"interleaved\"");
  if (partition != "params" && partition != "time") {  // else a list of block indices
    for (char c : partition + (partition.empty() ? "?" : ""))
      if (!(std::isdigit(static_cast<unsigned char>(c)) || c == ','))
        throw config_key_error("parallel", "partition",
                               "must be \"params\", \"time\" or a list of block indices like \"3,5\", got " +
                                   quote_toml_string(partition));
  }
  require_config_positive("parallel", "bucket_mb", bucket_mb);
  require_config_choice("parallel", "mode", mode, kConfigModeNames);
  require_config_at_least("parallel", "servers", servers, 1);
  require_config_at_least("parallel", "staleness", staleness, -1);
  require_config_choice("parallel", "compression", compression, kConfigCompressionNames);
  require_config_at_least("parallel", "powersgd_rank", powersgd_rank, 1);
  require_config_at_least("parallel", "powersgd_start_step", powersgd_start_step, -1);
  require_config_at_least("parallel", "onebit_freeze_step", onebit_freeze_step, -1);
  if (onebit_freeze_step == 0)
    throw config_key_error("parallel", "onebit_freeze_step",
                           "= 0 leaves Adam's variance unestimated; set >= 1, or -1 for 20% of the steps");
}

namespace {

// What the exchange's compressor can serve (docs/compression.md): the 16-bit
// wire formats are [train] reduce_precision by another name; PowerSGD and
// 1-bit Adam replace DDP's all-reduce of fp32 gradients, so they need the
// plain data-parallel path, and 1-bit Adam is an Adam.
void require_compression_supported(const Config& c) {
  const auto& p = c.parallel;
  if (p.compression == "none") return;
  const std::string is = "= " + quote_toml_string(p.compression);
  if (p.compression == "bf16" || p.compression == "fp16") {
    if (c.train.reduce_precision != "fp32" && c.train.reduce_precision != p.compression)
      throw config_key_error("parallel", "compression",
                             is + " contradicts [train] reduce_precision = " + quote_toml_string(c.train.reduce_precision) +
                                 "; set one of them");
    return;
  }
  auto refuse = [&](const std::string& what, const std::string& instead) {
    throw config_key_error("parallel", "compression", is + " cannot serve " + what + "; " + instead);
  };
  if (p.mode != "sync") refuse("mode = " + quote_toml_string(p.mode), "set mode = \"sync\" or compression = \"none\"");
  if (p.tp > 1) refuse("tp = " + std::to_string(p.tp) + " (each tp rank's error feedback would need its own checkpoint)",
                       "set tp = 1, or compression = \"bf16\"");
  if (p.pp > 1) refuse("pp = " + std::to_string(p.pp) + " (pipeline stages reduce their own buckets)",
                       "set pp = 1, or compression = \"bf16\"");
  if (p.zero > 0) refuse("zero = " + std::to_string(p.zero) + " (ZeRO reduce-scatters its gradients)",
                         "set zero = 0, or compression = \"bf16\"");
  if (c.train.precision != "fp32" || c.train.reduce_precision != "fp32")
    refuse("[train] precision / reduce_precision other than \"fp32\"", "set both to \"fp32\"");
  if (p.compression == "onebit_adam" && c.optim.name != "adamw")
    refuse("[optim] name = " + quote_toml_string(c.optim.name) + " (1-bit Adam is an Adam)",
           "set [optim] name = \"adamw\", or compression = \"powersgd\"");
}

}  // namespace

void OptimSection::validate() const {
  require_config_choice("optim", "name", name, kConfigOptimizerNames);
  require_config_positive("optim", "lr", lr);
  require_config_non_negative("optim", "weight_decay", weight_decay);
  require_config_at_least("optim", "warmup_steps", warmup_steps, 0);
  require_config_non_negative("optim", "grad_clip", grad_clip);
}

OptimSection::operator optim::OptimizerOptions() const {
  require_config_choice("optim", "name", name, kConfigOptimizerNames);
  optim::OptimizerOptions o;
  o.kind = name == "sgd" ? optim::OptimizerKind::kSgd : optim::OptimizerKind::kAdamW;
  o.weight_decay = weight_decay;
  return o;
}

void TrainSection::validate() const {
  require_config_at_least("train", "steps", steps, 1);
  require_config_at_least("train", "seed", seed, 0);
  require_config_at_least("train", "log_every", log_every, 1);
  if (out_dir.empty()) throw config_key_error("train", "out_dir", "must name a folder, got \"\"");
  require_config_at_least("train", "checkpoint_every", checkpoint_every, 0);
  require_config_at_least("train", "threads_per_rank", threads_per_rank, 0);
  require_config_choice("train", "precision", precision, kConfigPrecisionNames);
  require_config_positive("train", "initial_loss_scale", initial_loss_scale);
  require_config_at_least("train", "loss_scale_window", loss_scale_window, 1);
  require_config_choice("train", "reduce_precision", reduce_precision, kConfigPrecisionNames);
}

void CommSection::validate() const {
  // Refused by name rather than by the list of choices: configs written for
  // PyTorch's torch.distributed often say "nccl", and silently running MPI
  // instead would hide what the job actually uses.
  if (backend == "nccl")
    throw config_key_error("comm", "backend",
                           "= \"nccl\" is not available in this build (MPI is the backend; CUDA tensors are "
                           "staged through host memory); set backend = \"auto\" or \"mpi\"");
  require_config_choice("comm", "backend", backend, kConfigBackendNames);
  require_config_positive("comm", "timeout_s", timeout_s);
}

void Config::validate() const {
  model.validate();
  data.validate();
  parallel.validate();
  optim.validate();
  train.validate();
  comm.validate();
  require_config_model_suits_data(model, data);
  require_compression_supported(*this);
}

}  // namespace paratorch::train
