// src/report/metrics.cpp — see metrics.h.
#include "report/metrics.h"

#include <paratorch/errors.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cmath>
#include <cstring>

namespace paratorch::report {

std::string to_json_line(const StepMetrics& m) {
  nlohmann::json j;
  j["step"] = m.step;
  j["loss"] = m.loss;
  j["lr"] = m.lr;
  j["step_ms"] = m.step_ms;
  j[m.throughput_unit == "tokens/s" ? "tokens_per_s" : "samples_per_s"] = m.throughput;
  if (std::isnan(m.grad_norm)) j["grad_norm"] = nullptr;  // not measured, see StepMetrics
  else j["grad_norm"] = m.grad_norm;
  for (const auto& [key, value] : m.extra) j[key] = value;
  return j.dump();
}

MetricsWriter::MetricsWriter(const std::string& path, bool append) {
  file_ = std::fopen(path.c_str(), append ? "a" : "w");
  if (!file_)
    throw RuntimeFailure("paratorch: cannot write metrics file " + path + ": " + std::strerror(errno));
}

MetricsWriter::~MetricsWriter() {
  if (file_) std::fclose(file_);
}

void MetricsWriter::write(const StepMetrics& m) {
  std::string line = to_json_line(m) + "\n";
  std::fwrite(line.data(), 1, line.size(), file_);
  std::fflush(file_);
}

}  // namespace paratorch::report
