// src/parallel/tensor_parallel/plan_match.h — which children a
// TensorParallelPlan names: glob patterns over dotted child names, where `*`
// is one name component (torch.distributed.tensor.parallel's plan keys
// behave the same way).
#pragma once
#include <paratorch/tensor_parallel.h>

#include <string>
#include <vector>

namespace paratorch::tensor_parallel {

/// One child a plan entry matched.
struct PlanMatch {
  std::string name;   // full dotted child name
  size_t entry = 0;   // index into the plan
};

/// True when `pattern` matches `name` component by component.
bool pattern_matches(const std::string& pattern, const std::string& name);

/// Every child of `names` (full dotted names, in module order) that `plan`
/// matches, in module order. UsageError when a pattern is empty, matches no
/// name (listing the nearest names) or a name matches two patterns.
std::vector<PlanMatch> match_plan(const std::vector<std::string>& names, const TensorParallelPlan& plan);

}  // namespace paratorch::tensor_parallel
