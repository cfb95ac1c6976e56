// src/parallel/async/shard_plan.cpp — see shard_plan.h.
#include "parallel/async/shard_plan.h"

#include <algorithm>

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

}  // namespace paratorch::async
