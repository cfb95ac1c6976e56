// src/parallel/async/shard_plan.cpp — see shard_plan.h.
#include "parallel/async/shard_plan.h"

#include <paratorch/errors.h>

#include <algorithm>
#include <cctype>
#include <set>

namespace paratorch::async {

std::vector<Piece> ShardPlan::pieces_of(int server) const {
  std::vector<Piece> out;
  for (const auto& p : pieces)
    if (p.server == server) out.push_back(p);
  return out;
}

int64_t ShardPlan::numel_of(int server) const {
  int64_t n = 0;
  for (const auto& p : pieces)
    if (p.server == server) n += p.numel;
  return n;
}

// Walks the rows of every parameter in order; server k's range ends at the
// first row boundary at or past (k+1)/S of the total bytes. The last server
// takes the rest, so every row has exactly one owner.
ShardPlan plan_shards(const std::vector<std::pair<std::string, torch::Tensor>>& params, int servers) {
  ShardPlan plan;
  plan.servers = servers;
  int64_t total = 0;
  for (const auto& [name, t] : params) total += t.numel() * static_cast<int64_t>(t.element_size());
  int64_t done = 0;  // bytes assigned so far
  int server = 0;
  auto boundary = [&](int k) { return total * (k + 1) / servers; };
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& t = params[i].second;
    const int64_t rows = t.dim() == 0 ? 1 : t.size(0);
    const int64_t row_bytes = rows ? t.numel() * static_cast<int64_t>(t.element_size()) / rows : 0;
    int64_t row = 0;
    while (row < rows) {
      while (server + 1 < servers && done >= boundary(server)) ++server;
      int64_t take = rows - row;
      if (server + 1 < servers && row_bytes > 0) {
        const int64_t room = boundary(server) - done;
        take = std::clamp<int64_t>((room + row_bytes - 1) / row_bytes, 1, rows - row);
      }
      Piece p;
      p.server = server;
      p.param = i;
      p.name = params[i].first;
      p.row_begin = row;
      p.row_end = row + take;
      p.numel = rows ? t.numel() / rows * take : 0;
      p.key = (row == 0 && take == rows) ? p.name
                                         : p.name + "@rows" + std::to_string(row) + "-" + std::to_string(row + take);
      plan.pieces.push_back(p);
      row += take;
      done += take * row_bytes;
    }
  }
  return plan;
}

torch::Tensor piece_view(const torch::Tensor& full, const Piece& piece) {
  if (full.dim() == 0) return full;
  return full.narrow(0, piece.row_begin, piece.row_end - piece.row_begin);
}

std::map<std::string, torch::Tensor> pieces_from_whole(const std::map<std::string, torch::Tensor>& whole,
                                                       const std::vector<Piece>& pieces) {
  std::map<std::string, torch::Tensor> out;
  if (auto step = whole.find("step"); step != whole.end()) out["step"] = step->second;
  std::set<std::string> names;
  for (const auto& piece : pieces) names.insert(piece.name);
  for (const auto& piece : pieces) {
    if (auto it = whole.find(piece.name); it != whole.end()) out[piece.key] = piece_view(it->second, piece);
    // State kinds have no dot ("exp_avg", "momentum_buffer"), parameter names may.
    for (auto it = whole.lower_bound(piece.name + "."); it != whole.end(); ++it) {
      const std::string& key = it->first;
      if (key.compare(0, piece.name.size() + 1, piece.name + ".") != 0) break;
      const std::string kind = key.substr(piece.name.size() + 1);
      if (kind.find('.') != std::string::npos || names.count(key)) continue;
      // A per-parameter step count (torch::optim's Adam keeps one) holds for
      // every row: each piece takes it whole.
      out[piece.key + "." + kind] = kind == "step" ? it->second : piece_view(it->second, piece);
    }
  }
  return out;
}

namespace {

// "<name>@rows<a>-<b>[.<kind>]" -> ("<name>[.<kind>]", a, b); false for other keys.
bool parse_row_key(const std::string& key, std::string* whole, int64_t* a, int64_t* b) {
  const auto at = key.rfind("@rows");
  if (at == std::string::npos) return false;
  const auto dash = key.find('-', at);
  if (dash == std::string::npos) return false;
  size_t end = dash + 1;
  while (end < key.size() && std::isdigit(static_cast<unsigned char>(key[end]))) ++end;
  try {
    *a = std::stoll(key.substr(at + 5, dash - at - 5));
    *b = std::stoll(key.substr(dash + 1, end - dash - 1));
  } catch (const std::exception&) {
    return false;
  }
  *whole = key.substr(0, at) + key.substr(end);
  return true;
}

}  // namespace

std::map<std::string, torch::Tensor> whole_from_pieces(const std::map<std::string, torch::Tensor>& pieces) {
  std::map<std::string, torch::Tensor> out;
  std::map<std::string, std::map<int64_t, std::pair<int64_t, torch::Tensor>>> rows;  // whole key -> a -> (b, piece)
  for (const auto& [key, t] : pieces) {
    std::string whole;
    int64_t a = 0, b = 0;
    if (parse_row_key(key, &whole, &a, &b))
      rows[whole][a] = {b, t};
    else
      out[key] = t;
  }
  for (auto& [whole, parts] : rows) {
    std::vector<torch::Tensor> ordered;
    int64_t next = 0;
    for (auto& [a, part] : parts) {
      if (a != next)
        throw RuntimeFailure("paratorch: the pieces of '" + whole + "' " + (a > next ? "miss" : "overlap at") +
                             " rows " + std::to_string(std::min(a, next)) + "-" + std::to_string(std::max(a, next)) +
                             " (a server's checkpoint is missing or from another run)");
      if (part.second.dim() == 0 || part.second.size(0) != part.first - a)
        throw RuntimeFailure("paratorch: the piece of '" + whole + "' for rows " + std::to_string(a) + "-" +
                             std::to_string(part.first) + " has shape " + c10::str(part.second.sizes()));
      ordered.push_back(part.second);
      next = part.first;
    }
    if (out.count(whole))
      throw RuntimeFailure("paratorch: '" + whole +
                           "' is both whole and in row pieces (checkpoints of two server counts?)");
    out[whole] = torch::cat(ordered, 0);
  }
  return out;
}

}  // namespace paratorch::async
