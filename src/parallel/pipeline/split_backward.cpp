// src/parallel/pipeline/split_backward.cpp — see split_backward.h.
#include "parallel/pipeline/split_backward.h"

#include <paratorch/errors.h>
#include <torch/csrc/autograd/engine.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/accumulate_grad.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <unordered_map>

namespace paratorch::pipeline {

using torch::autograd::Edge;
using torch::autograd::Node;
using torch::autograd::variable_list;

namespace {

bool is_leaf_accumulator(const Node* n) { return dynamic_cast<const torch::autograd::AccumulateGrad*>(n) != nullptr; }

// Every node reachable from `root`, each once, depth first from the root, the
// same order on every rank for the same graph (iterative: a deep model's
// graph would overflow a recursive walk).
std::vector<Node*> reachable(Node* root) {
  std::vector<Node*> out, stack{root};
  std::set<Node*> seen{root};
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    out.push_back(n);
    for (const Edge& e : n->next_edges())
      if (e.is_valid() && seen.insert(e.function.get()).second) stack.push_back(e.function.get());
  }
  return out;
}

// Nodes of `nodes` (all reachable from one root) from which a target can be
// reached, the targets included: children before parents (Kahn's order on the
// reversed edges), so one sweep decides each node.
std::set<Node*> reaching(const std::vector<Node*>& nodes, const std::vector<Node*>& targets) {
  std::unordered_map<Node*, int> parents;  // in-degree within the graph
  for (Node* n : nodes)
    for (const Edge& e : n->next_edges())
      if (e.is_valid()) ++parents[e.function.get()];
  std::vector<Node*> order, ready;  // order: parents before children
  for (Node* n : nodes)
    if (!parents[n]) ready.push_back(n);
  while (!ready.empty()) {
    Node* n = ready.back();
    ready.pop_back();
    order.push_back(n);
    for (const Edge& e : n->next_edges())
      if (e.is_valid() && --parents[e.function.get()] == 0) ready.push_back(e.function.get());
  }
  std::set<Node*> out(targets.begin(), targets.end());
  for (auto it = order.rbegin(); it != order.rend(); ++it)
    for (const Edge& e : (*it)->next_edges())
      if (e.is_valid() && out.count(e.function.get())) {
        out.insert(*it);
        break;
      }
  return out;
}

// Parameter accumulators reachable from `start` (never on the input path).
std::vector<Edge> parameters_below(Node* start) {
  std::vector<Edge> out;
  for (Node* n : reachable(start))
    if (is_leaf_accumulator(n)) out.emplace_back(n->shared_from_this(), 0);
  return out;
}

// Keeps the gradient arriving at a node during I (only while armed).
struct Capture : torch::autograd::FunctionPreHook {
  std::shared_ptr<bool> armed;
  std::function<void(const variable_list&)> keep;
  variable_list operator()(const variable_list& grads) override {
    if (*armed) keep(grads);
    return grads;
  }
};

}  // namespace

struct SplitBackward::State {
  torch::Tensor output, grad_output;  // for the unsplit W (whole backward)
  bool ran_input = false, is_split = false;
  struct Intermediate {
    std::shared_ptr<Node> node;
    std::vector<Edge> parameters;
    variable_list grads;  // what arrived at the node in I
    bool reached = false;
  };
  std::vector<Intermediate> intermediates;
  std::vector<size_t> reached_order;  // the order I reached them: backward's order
  std::shared_ptr<bool> armed = std::make_shared<bool>(false);
};

namespace {

// The first stage has no input to aim I at. Its "bottoms" stand in: the
// lowest nodes of the activation path, whose every edge is a chain to one
// parameter (an embedding lookup's sum with the position embedding, a first
// linear layer). I stops there and keeps what arrives; W starts there too.
std::vector<Node*> bottoms(const std::vector<Node*>& nodes) {
  std::unordered_map<Node*, bool> chain;  // a run of one-edge nodes ending in a parameter
  std::function<bool(Node*)> is_chain = [&](Node* n) {
    auto it = chain.find(n);
    if (it != chain.end()) return it->second;
    bool out = is_leaf_accumulator(n);
    if (!out) {
      const Edge* only = nullptr;
      int valid = 0;
      for (const Edge& e : n->next_edges())
        if (e.is_valid()) ++valid, only = &e;
      out = valid == 1 && is_chain(only->function.get());
    }
    return chain[n] = out;
  };
  std::vector<Node*> out;
  for (Node* n : nodes) {
    if (is_chain(n)) continue;
    bool all_chains = true;
    for (const Edge& e : n->next_edges()) all_chains &= !e.is_valid() || is_chain(e.function.get());
    if (all_chains) out.push_back(n);
  }
  return out;
}

}  // namespace

torch::Tensor SplitBackward::input_pass(const torch::Tensor& output, const torch::Tensor& grad_output,
                                        const torch::Tensor& input) {
  state_ = std::make_shared<State>();
  State& st = *state_;
  st.output = output;
  st.grad_output = grad_output.defined() ? grad_output : torch::ones_like(output);
  if (!output.grad_fn()) return {};
  const bool has_input = input.defined() && input.requires_grad();
  Node* root = output.grad_fn().get();
  const auto nodes = reachable(root);
  const Edge input_edge = has_input ? torch::autograd::impl::gradient_edge(input) : Edge();
  const std::vector<Node*> targets = has_input ? std::vector<Node*>{input_edge.function.get()} : bottoms(nodes);
  const auto on_path = reaching(nodes, targets);
  // Intermediates: on the path, with an edge leaving it towards parameters.
  std::map<Node*, int> owner;  // parameter accumulator -> intermediate
  bool shared = targets.empty() || !on_path.count(root);
  for (Node* n : nodes) {
    if (!on_path.count(n) || (has_input && n == input_edge.function.get())) continue;
    State::Intermediate im{n->shared_from_this(), {}, {}, false};
    for (const Edge& e : n->next_edges())
      if (e.is_valid() && !on_path.count(e.function.get()))
        for (Edge& p : parameters_below(e.function.get())) im.parameters.push_back(std::move(p));
    if (im.parameters.empty()) continue;
    std::set<Node*> mine;
    for (const Edge& p : im.parameters) mine.insert(p.function.get());
    for (Node* p : mine) shared |= !owner.emplace(p, static_cast<int>(st.intermediates.size())).second;
    im.parameters.clear();
    for (Node* p : mine) im.parameters.emplace_back(p->shared_from_this(), 0);
    st.intermediates.push_back(std::move(im));
  }
  for (Node* n : nodes)  // every parameter must be some intermediate's, or W would miss it
    shared |= is_leaf_accumulator(n) && !(has_input && n == input_edge.function.get()) && !owner.count(n);
  st.is_split = !shared;
  if (!st.is_split) {
    st.intermediates.clear();
    if (!has_input) return {};  // W runs the whole backward
    st.ran_input = true;
    return torch::autograd::grad({output}, {input}, {st.grad_output}, /*retain_graph=*/true, /*create_graph=*/false,
                                 /*allow_unused=*/true)[0];
  }
  st.ran_input = true;
  std::vector<Edge> outputs;                          // what I returns
  std::vector<std::pair<size_t, uint32_t>> captured;  // outputs[j] (bottoms only): intermediate, input
  if (has_input) outputs.push_back(input_edge);
  for (size_t i = 0; i < st.intermediates.size(); ++i) {
    const auto& node = st.intermediates[i].node;
    if (!has_input && std::find(targets.begin(), targets.end(), node.get()) != targets.end()) {
      for (uint32_t k = 0; k < node->num_inputs(); ++k) outputs.emplace_back(node, k), captured.emplace_back(i, k);
      continue;  // a bottom is not run by I: what arrives is captured instead
    }
    auto hook = std::make_unique<Capture>();
    hook->armed = st.armed;
    hook->keep = [&st, i](const variable_list& grads) {
      auto& im = st.intermediates[i];
      if (!im.reached) st.reached_order.push_back(i);
      im.grads = grads, im.reached = true;
    };
    node->add_pre_hook(std::move(hook));
  }
  *st.armed = true;
  auto got = torch::autograd::Engine::get_default_engine().execute(
      {torch::autograd::impl::gradient_edge(output)}, {st.grad_output}, /*keep_graph=*/true, /*create_graph=*/false,
      /*accumulate_grad=*/false, outputs);
  *st.armed = false;
  // What W will not run, it will not need: the saved activations of the
  // input path's other nodes (a GELU's input, attention's probabilities) go
  // now, so a retained graph holds only what the weight gradients read.
  std::set<Node*> kept;
  for (const auto& im : st.intermediates) kept.insert(im.node.get());
  for (Node* n : nodes)
    if (on_path.count(n) && !kept.count(n) && !is_leaf_accumulator(n)) n->release_variables();
  for (size_t j = 0; j < captured.size(); ++j) {
    auto& im = st.intermediates[captured[j].first];
    im.grads.resize(im.node->num_inputs());
    im.grads[captured[j].second] = got[j];
    if (!im.reached) st.reached_order.push_back(captured[j].first), im.reached = true;
  }
  return has_input ? got[0] : torch::Tensor();
}

void SplitBackward::weight_pass() {
  if (!state_) throw RuntimeFailure("pipeline: a weight pass (W) ran without its input pass (I)");
  State& st = *state_;
  auto& engine = torch::autograd::Engine::get_default_engine();
  if (!st.is_split) {  // the whole backward, to every leaf this graph reaches (the input's gradient is unused)
    if (st.output.grad_fn())
      engine.execute({torch::autograd::impl::gradient_edge(st.output)}, {st.grad_output}, /*keep_graph=*/false,
                     /*create_graph=*/false, /*accumulate_grad=*/true,
                     st.ran_input ? parameters_below(st.output.grad_fn().get()) : std::vector<Edge>{});
  } else {
    for (size_t i : st.reached_order) {
      auto& im = st.intermediates[i];
      std::vector<Edge> roots;
      variable_list grads;
      for (uint32_t k = 0; k < im.grads.size(); ++k)
        if (im.grads[k].defined()) roots.emplace_back(im.node, k), grads.push_back(im.grads[k]);
      if (roots.size() == 1 && roots[0].input_nr != 0) {  // the engine feeds a lone root at input 0
        roots.clear(), grads.clear();
        for (uint32_t k = 0; k < im.grads.size(); ++k) roots.emplace_back(im.node, k), grads.push_back(im.grads[k]);
      }
      if (!roots.empty())
        engine.execute(roots, grads, /*keep_graph=*/true, /*create_graph=*/false, /*accumulate_grad=*/true,
                       im.parameters);
    }
  }
  state_.reset();  // the graph goes with the last reference to it
}

bool SplitBackward::split() const { return state_ && state_->is_split; }

size_t SplitBackward::intermediates() const { return state_ ? state_->intermediates.size() : 0; }

}  // namespace paratorch::pipeline
