// src/parallel/tensor_parallel/plan_match.cpp — matching plan patterns to
// child names, and the "nearby names" a pattern that matches nothing is
// reported with (names of the same depth that agree on most components).
#include "parallel/tensor_parallel/plan_match.h"

#include <paratorch/errors.h>

#include <algorithm>

namespace paratorch::tensor_parallel {
namespace {

std::vector<std::string> components(const std::string& name) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    const auto dot = name.find('.', start);
    out.push_back(name.substr(start, dot - start));
    if (dot == std::string::npos) return out;
    start = dot + 1;
  }
}

// How many components agree (a `*` agrees with anything); a different depth
// counts against the name so that near misses of the same depth come first.
int closeness(const std::vector<std::string>& pattern, const std::vector<std::string>& name) {
  int score = 0;
  for (size_t i = 0; i < std::min(pattern.size(), name.size()); ++i)
    score += (pattern[i] == "*" || pattern[i] == name[i]) ? 2 : 0;
  return score - static_cast<int>(std::max(pattern.size(), name.size()) - std::min(pattern.size(), name.size()));
}

std::string nearby_names(const std::string& pattern, const std::vector<std::string>& names) {
  const auto want = components(pattern);
  std::vector<std::pair<int, size_t>> ranked;  // (-closeness, module order)
  for (size_t i = 0; i < names.size(); ++i) ranked.push_back({-closeness(want, components(names[i])), i});
  std::stable_sort(ranked.begin(), ranked.end());
  std::string out;
  for (size_t i = 0; i < ranked.size() && i < 6; ++i) out += (i ? ", " : "") + names[ranked[i].second];
  return out.empty() ? "(the module has no children)" : out;
}

}  // namespace

bool pattern_matches(const std::string& pattern, const std::string& name) {
  const auto p = components(pattern), n = components(name);
  if (p.size() != n.size()) return false;
  for (size_t i = 0; i < p.size(); ++i)
    if (p[i] != "*" && p[i] != n[i]) return false;
  return true;
}

std::vector<PlanMatch> match_plan(const std::vector<std::string>& names, const TensorParallelPlan& plan) {
  std::vector<PlanMatch> out;
  std::vector<int> entry_of(names.size(), -1);
  for (size_t e = 0; e < plan.size(); ++e) {
    const auto& pattern = plan[e].first;
    if (pattern.empty())
      throw UsageError("paratorch: parallelize: plan entry " + std::to_string(e) +
                       " has an empty pattern; name a child such as \"h.*.mlp.c_fc\"");
    bool any = false;
    for (size_t i = 0; i < names.size(); ++i) {
      if (!pattern_matches(pattern, names[i])) continue;
      if (entry_of[i] >= 0)
        throw UsageError("paratorch: parallelize: child \"" + names[i] + "\" matches both plan patterns \"" +
                         plan[static_cast<size_t>(entry_of[i])].first + "\" and \"" + pattern +
                         "\"; make the patterns disjoint");
      entry_of[i] = static_cast<int>(e);
      any = true;
    }
    if (!any)
      throw UsageError("paratorch: parallelize: plan pattern \"" + pattern +
                       "\" matches no child of the module; nearby child names: " + nearby_names(pattern, names));
  }
  for (size_t i = 0; i < names.size(); ++i)
    if (entry_of[i] >= 0) out.push_back({names[i], static_cast<size_t>(entry_of[i])});
  return out;
}

}  // namespace paratorch::tensor_parallel
