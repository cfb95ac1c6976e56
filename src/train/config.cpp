// src/train/config.cpp — see config.h. Owns the key table that drives TOML
// reading, --set overrides, to_toml, equality and the help text. The
// validation rules are in config_validate.cpp.
#include "train/config.h"
#include "train/config_words.h"

#include "models/registry.h"
#include "parallel/pipeline/schedule.h"

#include <paratorch/errors.h>

#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <type_traits>
#include <utility>

namespace paratorch::train {
using namespace config_words;
namespace {

std::string write_config_value(int value) { return std::to_string(value); }
std::string write_config_value(int64_t value) { return std::to_string(value); }
std::string write_config_value(double value) { return format_toml_float(value); }
std::string write_config_value(const std::string& value) { return quote_toml_string(value); }
std::string write_config_value(bool value) { return value ? "true" : "false"; }

// "string \"fast\"", "integer 5", "a table": what a TOML node holds, for errors.
std::string describe_toml_node(const toml::node& node) {
  if (auto s = node.value_exact<std::string>()) return "string " + quote_toml_string(*s);
  if (auto i = node.value_exact<int64_t>()) return "integer " + std::to_string(*i);
  if (auto f = node.value_exact<double>()) return "float " + format_toml_float(*f);
  if (auto b = node.value_exact<bool>()) return std::string("boolean ") + (*b ? "true" : "false");
  if (node.is_table()) return "a table";
  if (node.is_array()) return "an array";
  return "a date or time";
}

// ---- values from TOML nodes (false: the node's type does not fit) ------------

bool read_config_value(const toml::node& node, std::string& out) {
  auto text = node.value_exact<std::string>();
  if (text) out = *text;
  return text.has_value();
}

bool read_config_value(const toml::node& node, bool& out) {
  auto flag = node.value_exact<bool>();
  if (flag) out = *flag;
  return flag.has_value();
}

bool read_config_value(const toml::node& node, double& out) {  // integers accepted
  if (node.is_integer()) out = static_cast<double>(node.as_integer()->get());
  else if (node.is_floating_point()) out = node.as_floating_point()->get();
  return node.is_number();
}

bool read_config_value(const toml::node& node, int64_t& out) {
  if (node.is_integer()) out = node.as_integer()->get();
  return node.is_integer();
}

bool read_config_value(const toml::node& node, int& out) {
  int64_t wide = 0;
  if (!read_config_value(node, wide) || wide < INT_MIN || wide > INT_MAX) return false;
  out = static_cast<int>(wide);
  return true;
}

template <class T>
const char* config_type_name() {
  if constexpr (std::is_same_v<T, std::string>) return "string";
  else if constexpr (std::is_same_v<T, double>) return "number";
  else if constexpr (std::is_same_v<T, bool>) return "boolean";
  else return "integer";
}

// ---- the key table ---------------------------------------------------------------

// One key of the schema and how to read, write and compare it.
struct ConfigKey {
  std::string section, name, type, help;
  std::function<void(Config&, const toml::node&)> read;  // throws UsageError
  std::function<std::string(const Config&)> write;       // the value as TOML
  std::function<bool(const Config&, const Config&)> same;
};

template <class Section, class Holder, class T>
ConfigKey make_config_key(const std::string& section, Section Config::*part, T Holder::*field,
                          const std::string& name, std::string help) {
  auto slot = [part, field](auto& config) -> auto& { return (config.*part).*field; };
  ConfigKey key{section, name, config_type_name<T>(), std::move(help), {}, {}, {}};
  key.read = [slot, section, name](Config& config, const toml::node& node) {
    if (read_config_value(node, slot(config))) return;
    const std::string type = config_type_name<T>();
    const bool int_too_large = std::is_same_v<T, int> && node.is_integer();
    const std::string rule = int_too_large ? "must fit in 32 bits"
                             : type == "integer" ? "must be an integer" : "must be a " + type;
    throw config_key_error(section, name, rule + ", got " + describe_toml_node(node));
  };
  key.write = [slot](const Config& config) { return write_config_value(slot(config)); };
  key.same = [slot](const Config& a, const Config& b) { return slot(a) == slot(b); };
  return key;
}

// Adds the keys of one section, in file order.
template <class Section>
struct ConfigSectionKeys {
  std::string section;
  Section Config::*part;
  std::vector<ConfigKey>& keys;
  template <class Holder, class T>
  ConfigSectionKeys& add(T Holder::*field, const std::string& name, std::string help) {
    keys.push_back(make_config_key(section, part, field, name, std::move(help)));
    return *this;
  }
};

// [parallel] dp: "auto" (stored as 0) or a positive integer.
ConfigKey make_parallel_dp_key() {
  ConfigKey key{"parallel", "dp", "integer or \"auto\"",
                "data-parallel replicas; \"auto\" = world size / (pp * tp)", {}, {}, {}};
  key.read = [](Config& config, const toml::node& node) {
    int dp = 0;
    if (node.value_exact<std::string>() == "auto") config.parallel.dp = 0;
    else if (read_config_value(node, dp) && dp >= 1) config.parallel.dp = dp;
    else throw config_key_error("parallel", "dp", "must be \"auto\" or an integer >= 1, got " +
                                                      describe_toml_node(node));
  };
  key.write = [](const Config& config) {
    return config.parallel.dp == 0 ? std::string("\"auto\"") : std::to_string(config.parallel.dp);
  };
  key.same = [](const Config& a, const Config& b) { return a.parallel.dp == b.parallel.dp; };
  return key;
}

// [parallel] staleness: an integer >= -1, or "inf" (stored as -1: no bound,
// Ho et al.'s name for fully asynchronous).
ConfigKey make_parallel_staleness_key() {
  ConfigKey key{"parallel", "staleness", "integer or \"inf\"",
                "ps: 0 bulk-synchronous, k stale-synchronous, -1 or \"inf\" asynchronous", {}, {}, {}};
  key.read = [](Config& config, const toml::node& node) {
    int k = 0;
    const auto number = node.value_exact<double>();  // TOML reads a bare inf (--set ...=inf) as a float
    if (node.value_exact<std::string>() == "inf" || (number && std::isinf(*number) && *number > 0))
      config.parallel.staleness = -1;
    else if (read_config_value(node, k) && k >= -1) config.parallel.staleness = k;
    else throw config_key_error("parallel", "staleness", "must be an integer >= -1 or \"inf\", got " +
                                                             describe_toml_node(node));
  };
  key.write = [](const Config& config) { return std::to_string(config.parallel.staleness); };
  key.same = [](const Config& a, const Config& b) { return a.parallel.staleness == b.parallel.staleness; };
  return key;
}

std::vector<ConfigKey> build_config_schema() {
  std::vector<ConfigKey> keys;
  ConfigSectionKeys<ModelSection>{"model", &Config::model, keys}
      .add(&ModelSection::name, "name", "bundled model: " + join_config_words(models::model_family_names(), " | "))
      .add(&ModelSection::n_layers, "n_layers", "blocks: transformer (gpt), residual (mlp, cnn)")
      .add(&ModelSection::d_model, "d_model", "width: embedding (gpt), hidden (mlp), channels (cnn)")
      .add(&ModelSection::n_heads, "n_heads", "gpt: attention heads; must divide d_model")
      .add(&ModelSection::seq_len, "seq_len", "gpt: tokens per sample (context length)")
      .add(&ModelSection::vocab_size, "vocab_size", "gpt: token ids; >= 256 for byte-level text")
      .add(&ModelSection::d_in, "d_in", "mlp: input features (784 for fashion_mnist)")
      .add(&ModelSection::n_classes, "n_classes", "mlp, cnn: classes (10 for fashion_mnist)")
      .add(&ModelSection::n_users, "n_users", "mf: users (rows of the rating matrix)")
      .add(&ModelSection::n_items, "n_items", "mf: items (columns of the rating matrix)")
      .add(&ModelSection::n_factors, "n_factors", "mf: width of the user and item embeddings");
  ConfigSectionKeys<DataSection>{"data", &Config::data, keys}
      .add(&DataSection::source, "source",
           join_config_words(kConfigBundledSources, " | ") + " | a text file's path")
      .add(&DataSection::global_batch, "global_batch", "samples per optimizer step, whole job");
  keys.push_back(make_parallel_dp_key());
  ConfigSectionKeys<ParallelSection>{"parallel", &Config::parallel, keys}
      .add(&ParallelSection::pp, "pp", "pipeline stages")
      .add(&ParallelSection::tp, "tp", "tensor-parallel shards of each layer")
      .add(&ParallelSection::sequence_parallel, "sequence_parallel",
           "tp > 1: shard LayerNorm/residual activations along the sequence")
      .add(&ParallelSection::zero, "zero", "ZeRO stage 0..3 (sharding over dp)")
      .add(&ParallelSection::schedule, "schedule",
           "pipeline schedule: " + join_config_words(pipeline::schedule_names(), " | "))
      .add(&ParallelSection::microbatches, "microbatches", "micro-batches per step (pipeline)")
      .add(&ParallelSection::virtual_stages, "virtual_stages", "model chunks per stage (interleaved; zb-v has 2)")
      .add(&ParallelSection::partition, "partition",
           "pipeline cuts: params (balance memory) | time (balance measured speed) | \"3,5\" (first block of stages "
           "1..)")
      .add(&ParallelSection::activation_checkpointing, "activation_checkpointing",
           "pipeline: recompute each stage's forward during backward (less memory)")
      .add(&ParallelSection::zero_release_memory, "zero_release_memory",
           "zero = 3: return freed heap pages to the OS after each block (lower peak memory, slower steps)")
      .add(&ParallelSection::bucket_mb, "bucket_mb", "gradient all-reduce bucket size, MiB")
      .add(&ParallelSection::mode, "mode", join_config_words(kConfigModeNames, " | "))
      .add(&ParallelSection::servers, "servers", "ps: parameter-server ranks")
      .add(&ParallelSection::compression, "compression",
           "dp gradient exchange: " + join_config_words(kConfigCompressionNames, " | ") + " (docs/compression.md)")
      .add(&ParallelSection::powersgd_rank, "powersgd_rank", "powersgd: rank of each matrix's approximation")
      .add(&ParallelSection::powersgd_start_step, "powersgd_start_step",
           "powersgd: steps reduced in full first; -1 = [optim] warmup_steps")
      .add(&ParallelSection::onebit_freeze_step, "onebit_freeze_step",
           "onebit_adam: steps of plain Adam before compression; -1 = 20% of [train] steps");
  keys.push_back(make_parallel_staleness_key());
  ConfigSectionKeys<OptimSection>{"optim", &Config::optim, keys}
      .add(&OptimSection::name, "name", join_config_words(kConfigOptimizerNames, " | "))
      .add(&OptimSection::lr, "lr", "peak learning rate")
      .add(&OptimSection::weight_decay, "weight_decay", "weight decay (decoupled for adamw)")
      .add(&OptimSection::warmup_steps, "warmup_steps", "steps of linear warm-up to lr")
      .add(&OptimSection::grad_clip, "grad_clip", "max global gradient norm; 0 = no clipping");
  ConfigSectionKeys<TrainSection>{"train", &Config::train, keys}
      .add(&TrainSection::steps, "steps", "optimizer steps")
      .add(&TrainSection::seed, "seed", "seeds initialization and data order")
      .add(&TrainSection::log_every, "log_every", "steps between metrics lines")
      .add(&TrainSection::out_dir, "out_dir", "folder for metrics, plots, trace, checkpoints")
      .add(&TrainSection::checkpoint_every, "checkpoint_every", "steps between checkpoints; 0 = only the final one")
      .add(&TrainSection::threads_per_rank, "threads_per_rank", "0 = this node's cores / its ranks")
      .add(&TrainSection::precision, "precision", join_config_words(kConfigPrecisionNames, " | "))
      .add(&TrainSection::initial_loss_scale, "initial_loss_scale", "fp16: the dynamic loss scale at step 0")
      .add(&TrainSection::loss_scale_window, "loss_scale_window", "fp16: clean steps before the loss scale doubles")
      .add(&TrainSection::reduce_precision, "reduce_precision",
           "dtype of the gradient reduction over dp: " + join_config_words(kConfigPrecisionNames, " | "));
  ConfigSectionKeys<CommSection>{"comm", &Config::comm, keys}
      .add(&CommSection::backend, "backend", join_config_words(kConfigBackendNames, " | "))
      .add(&CommSection::timeout_s, "timeout_s", "seconds a collective may take before the job ends");
  return keys;
}

const std::vector<ConfigKey>& config_schema() {
  static const std::vector<ConfigKey> keys = build_config_schema();
  return keys;
}

UsageError unknown_config_section_error(const std::string& section) {
  return UsageError("paratorch: unknown config section [" + section + "]; valid sections: " +
                    join_config_words(kConfigSectionNames, ", "));
}

const ConfigKey& find_config_key(const std::string& section, const std::string& name) {
  if (!config_list_has(kConfigSectionNames, section)) throw unknown_config_section_error(section);
  std::vector<std::string> valid;
  for (const auto& key : config_schema()) {
    if (key.section != section) continue;
    if (key.name == name) return key;
    valid.push_back(key.name);
  }
  throw UsageError("paratorch: unknown key '" + name + "' in [" + section +
                   "]; valid keys: " + join_config_words(valid, ", "));
}

// ---- reading ---------------------------------------------------------------------

void read_config_table(const toml::table& root, Config& config) {
  for (auto&& [section_key, node] : root) {
    const std::string section(section_key.str());
    if (!config_list_has(kConfigSectionNames, section)) throw unknown_config_section_error(section);
    const toml::table* entries = node.as_table();
    if (!entries)
      throw UsageError("paratorch: " + section + " must be a section ([" + section + "]), got " +
                       describe_toml_node(node));
    for (auto&& [key, value] : *entries) find_config_key(section, std::string(key.str())).read(config, value);
  }
}

std::string trim_config_text(const std::string& text) {
  const auto first = text.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  return text.substr(first, text.find_last_not_of(" \t") - first + 1);
}

// A --set value as the node "v": TOML when the text is one value (and, for a
// string key, a quoted string); otherwise the text itself as a string.
toml::table parse_config_override_value(const std::string& text, bool wants_string) {
  toml::table parsed;
  try {
    parsed = toml::parse("v = " + text);
  } catch (const toml::parse_error&) {
    parsed = toml::table{};
  }
  const toml::node* value = parsed.get("v");
  if (parsed.size() == 1 && value && (!wants_string || value->is_string())) return parsed;
  toml::table literal;
  literal.insert("v", text);
  return literal;
}

void apply_config_override(const std::string& assignment, Config& config) {
  const auto eq = assignment.find('='), dot = assignment.find('.');
  if (eq == std::string::npos || dot == std::string::npos || dot > eq)
    throw UsageError("paratorch: --set expects section.key=value (e.g. --set optim.lr=1e-3), got '" +
                     assignment + "'");
  const std::string section = trim_config_text(assignment.substr(0, dot));
  const std::string name = trim_config_text(assignment.substr(dot + 1, eq - dot - 1));
  const ConfigKey& key = find_config_key(section, name);
  const toml::table value =
      parse_config_override_value(trim_config_text(assignment.substr(eq + 1)), key.type == "string");
  try {
    key.read(config, *value.get("v"));
  } catch (const UsageError& e) {
    throw UsageError(std::string(e.what()) + " (from --set " + assignment + ")");
  }
}

Config config_from_toml_source(const std::string& text, const std::string& source_name,
                               const std::vector<std::string>& overrides) {
  toml::table root;
  try {
    root = toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    throw UsageError("paratorch: bad TOML in config " + source_name + " at line " +
                     std::to_string(e.source().begin.line) + ", column " +
                     std::to_string(e.source().begin.column) + ": " + std::string(e.description()));
  }
  Config config;
  read_config_table(root, config);
  for (const auto& assignment : overrides) apply_config_override(assignment, config);
  config.validate();
  return config;
}

std::string read_config_file(const std::string& path) {
  std::error_code ignored;
  if (!std::filesystem::is_regular_file(path, ignored))
    throw UsageError("paratorch: config file '" + path + "' " +
                     (std::filesystem::exists(path, ignored) ? "is not a regular file" : "does not exist") +
                     "; pass a TOML file's path to --config");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError("paratorch: cannot open config file '" + path + "'; check its permissions");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

bool operator==(const Config& a, const Config& b) {
  const auto& keys = config_schema();
  return std::all_of(keys.begin(), keys.end(), [&](const ConfigKey& key) { return key.same(a, b); });
}

bool operator!=(const Config& a, const Config& b) { return !(a == b); }

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  return config_from_toml_source(read_config_file(path), "file '" + path + "'", overrides);
}

Config config_from_string(const std::string& toml_text, const std::vector<std::string>& overrides) {
  return config_from_toml_source(toml_text, "text", overrides);
}

std::string to_toml(const Config& config) {
  std::string out = "# paratorch config: every key, resolved\n";
  std::string section;
  for (const auto& key : config_schema()) {
    if (key.section != section) out += "\n[" + (section = key.section) + "]\n";
    out += key.name + " = " + key.write(config) + "\n";
  }
  return out;
}

std::vector<ConfigKeyInfo> config_keys() {
  const Config defaults;
  std::vector<ConfigKeyInfo> infos;
  for (const auto& key : config_schema())
    infos.push_back({key.section, key.name, key.type, key.write(defaults), key.help});
  return infos;
}

std::string config_reference() {
  std::string out =
      "Config file (TOML). Every key is optional; the defaults are shown.\n"
      "Override any key with --set section.key=value (e.g. --set optim.lr=1e-3).\n";
  std::string section;
  for (const auto& info : config_keys()) {
    if (info.section != section) out += "\n[" + (section = info.section) + "]\n";
    std::string line = "  " + info.key + " = " + info.default_value;
    line.resize(std::max<size_t>(line.size() + 2, 32), ' ');
    out += line + info.help + "\n";
  }
  return out;
}

}  // namespace paratorch::train
