// src/plan/cluster.cpp — see cluster.h.
#include "plan/cluster.h"

#include <paratorch/errors.h>

#include <toml++/toml.h>

#include <fstream>
#include <functional>
#include <set>
#include <sstream>

namespace paratorch::plan {
namespace {

UsageError key_error(const std::string& origin, const std::string& key, const std::string& problem) {
  return UsageError("paratorch: cluster " + origin + ": [cluster] " + key + " " + problem);
}

double number_of(const toml::node& node, const std::string& origin, const std::string& key) {
  if (node.is_integer()) return static_cast<double>(node.as_integer()->get());
  if (node.is_floating_point()) return node.as_floating_point()->get();
  throw key_error(origin, key, "must be a number");
}

}  // namespace

double Cluster::peak_flops(const std::string& precision) const {
  auto it = peak_tflops.find(precision);
  if (it == peak_tflops.end()) it = peak_tflops.find("any");
  if (it == peak_tflops.end())
    throw UsageError("paratorch: the cluster file's [cluster] peak_tflops has no value for precision \"" + precision +
                     "\"; give one number, or a table with a " + precision + " entry");
  return it->second * 1e12;
}

double Cluster::compute_share(int ranks_per_node) const {
  if (cores_per_node <= 0 || ranks_per_node <= cores_per_node) return 1;
  return static_cast<double>(cores_per_node) / ranks_per_node;
}

void Cluster::validate() const {
  auto positive = [](const char* key, double v) {
    if (!(v > 0)) throw UsageError(std::string("paratorch: cluster: [cluster] ") + key + " = " + std::to_string(v) +
                                   " must be > 0");
  };
  auto non_negative = [](const char* key, double v) {
    if (!(v >= 0)) throw UsageError(std::string("paratorch: cluster: [cluster] ") + key + " = " + std::to_string(v) +
                                    " must be >= 0");
  };
  positive("nodes", nodes);
  positive("gpus_per_node", gpus_per_node);
  if (peak_tflops.empty()) throw UsageError("paratorch: cluster: [cluster] peak_tflops is missing");
  for (const auto& [dtype, v] : peak_tflops) positive(("peak_tflops." + dtype).c_str(), v);
  positive("memory_gb", memory_gb);
  positive("intra_node_gbps", intra_node_gbps);
  positive("inter_node_gbps", inter_node_gbps);
  non_negative("intra_node_latency_us", intra_node_latency_us);
  non_negative("inter_node_latency_us", inter_node_latency_us);
  positive("memory_gbps", memory_gbps);
  non_negative("elementwise_gbps", elementwise_gbps);
  if (!(gemm_efficiency > 0 && gemm_efficiency <= 1))
    throw UsageError("paratorch: cluster: [cluster] gemm_efficiency = " + std::to_string(gemm_efficiency) +
                     " must be in (0, 1]");
  non_negative("gemm_half_dim", gemm_half_dim);
  non_negative("cores_per_node", cores_per_node);
}

Cluster cluster_from_string(const std::string& toml_text, const std::string& origin) {
  toml::table root;
  try {
    root = toml::parse(toml_text);
  } catch (const toml::parse_error& e) {
    std::ostringstream where;
    where << e.source().begin;
    throw UsageError("paratorch: cluster " + origin + " is not valid TOML at " + where.str() + ": " +
                     std::string(e.description()));
  }
  const toml::table* t = root["cluster"].as_table();
  if (!t) throw UsageError("paratorch: cluster " + origin + " has no [cluster] table");
  Cluster c;
  c.peak_tflops.clear();
  const std::map<std::string, double*> numbers = {
      {"memory_gb", &c.memory_gb},
      {"intra_node_gbps", &c.intra_node_gbps},
      {"inter_node_gbps", &c.inter_node_gbps},
      {"intra_node_latency_us", &c.intra_node_latency_us},
      {"inter_node_latency_us", &c.inter_node_latency_us},
      {"memory_gbps", &c.memory_gbps},
      {"elementwise_gbps", &c.elementwise_gbps},
      {"gemm_efficiency", &c.gemm_efficiency},
      {"gemm_half_dim", &c.gemm_half_dim}};
  const std::set<std::string> required = {"nodes", "gpus_per_node", "peak_tflops", "memory_gb", "intra_node_gbps",
                                          "inter_node_gbps", "intra_node_latency_us", "inter_node_latency_us"};
  for (const auto& key : required)
    if (!t->contains(key)) throw key_error(origin, key, "is missing (docs/plan.md lists the cluster keys)");
  for (const auto& [key_node, node] : *t) {
    const std::string key(key_node.str());
    if (key == "nodes" || key == "gpus_per_node" || key == "cores_per_node") {
      if (!node.is_integer()) throw key_error(origin, key, "must be an integer");
      (key == "nodes" ? c.nodes : key == "gpus_per_node" ? c.gpus_per_node : c.cores_per_node) =
          static_cast<int>(node.as_integer()->get());
    } else if (key == "peak_tflops") {
      if (const toml::table* per = node.as_table()) {
        for (const auto& [dtype, v] : *per) c.peak_tflops[std::string(dtype.str())] = number_of(v, origin, key);
      } else {
        c.peak_tflops["any"] = number_of(node, origin, key);
      }
    } else if (auto it = numbers.find(key); it != numbers.end()) {
      *it->second = number_of(node, origin, key);
    } else {
      throw key_error(origin, key, "is not a cluster key (docs/plan.md lists them)");
    }
  }
  try {
    c.validate();
  } catch (const UsageError& e) {
    std::string what = e.what();
    const std::string prefix = "paratorch: cluster: ";
    throw UsageError("paratorch: cluster " + origin + ": " + what.substr(what.find(prefix) == 0 ? prefix.size() : 0));
  }
  return c;
}

Cluster load_cluster(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw UsageError("paratorch: cluster file '" + path + "' does not exist; pass a TOML file to --cluster");
  std::stringstream text;
  text << in.rdbuf();
  return cluster_from_string(text.str(), "file '" + path + "'");
}

}  // namespace paratorch::plan
