// src/layout/layout.cpp — parsing, validation and rank<->coordinate mapping.
#include <paratorch/errors.h>
#include <paratorch/layout.h>

#include <sstream>

namespace paratorch {
namespace {

int parse_positive(const std::string& key, const std::string& value) {
  size_t used = 0;
  int v = 0;
  try {
    v = std::stoi(value, &used);
  } catch (...) {
    used = 0;
  }
  if (used != value.size() || v < 1)
    throw UsageError("paratorch: layout value " + key + "=" + value +
                     " is not a positive integer" + (key == "dp" ? " or 'auto'" : ""));
  return v;
}

}  // namespace

Layout Layout::parse(const std::string& text) {
  Layout layout;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item.empty()) continue;
    auto eq = item.find('=');
    if (eq == std::string::npos)
      throw UsageError("paratorch: layout item '" + item + "' must look like key=value (e.g. dp=2,pp=1,tp=1)");
    std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    if (key == "dp") layout.dp = value == "auto" ? 0 : parse_positive(key, value);
    else if (key == "pp") layout.pp = parse_positive(key, value);
    else if (key == "tp") layout.tp = parse_positive(key, value);
    else throw UsageError("paratorch: unknown layout key '" + key + "'; valid keys: dp, pp, tp");
  }
  return layout;
}

std::vector<Layout> Layout::factorizations(int world_size) {
  std::vector<Layout> all;
  for (int pp = 1; pp <= world_size; ++pp)
    for (int tp = 1; tp <= world_size; ++tp)
      if (world_size % (pp * tp) == 0) all.push_back(Layout{world_size / (pp * tp), pp, tp});
  return all;
}

Layout Layout::resolve(int world_size) const {
  Layout r = *this;
  bool fits = world_size % (pp * tp) == 0;
  if (fits && r.dp == 0) r.dp = world_size / (pp * tp);
  if (!fits || r.world_size() != world_size) {
    std::string valid;
    for (const auto& l : factorizations(world_size)) valid += "\n  " + l.to_string();
    throw UsageError("paratorch: layout " + to_string() + " needs " +
                     (dp ? std::to_string(dp * pp * tp) : "a multiple of " + std::to_string(pp * tp)) +
                     " ranks but the job has " + std::to_string(world_size) +
                     "; valid layouts for " + std::to_string(world_size) + " ranks:" + valid);
  }
  return r;
}

Coords Layout::coords_of(int rank) const {
  Coords c;
  c.tp = rank % tp;
  c.dp = (rank / tp) % dp;
  c.pp = rank / (tp * dp);
  return c;
}

int Layout::rank_of(Coords c) const { return c.pp * (dp * tp) + c.dp * tp + c.tp; }

std::string Layout::to_string() const {
  return "dp=" + (dp ? std::to_string(dp) : std::string("auto")) + ",pp=" + std::to_string(pp) +
         ",tp=" + std::to_string(tp);
}

}  // namespace paratorch
