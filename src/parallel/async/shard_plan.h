// src/parallel/async/shard_plan.h — which parameter server holds which rows of which
// parameter.
//
// The parameters are laid out as key ranges: every parameter in model order,
// and within a parameter its rows (dim 0). The S servers get contiguous
// ranges of about total_bytes / S each, so a large tensor (gpt's token
// embedding, mf's tables) is split by rows across servers and small tensors
// are packed whole. A piece keeps the parameter's other dimensions, so a
// slice of a matrix is still a matrix and the optimizer's "weight decay on
// dim >= 2 only" rule treats it as the full tensor would be treated.
//
// Example:
///   ShardPlan plan = plan_shards(model->named_parameters(), /*servers=*/2);
///   for (const Piece& p : plan.pieces_of(1)) ...   // server 1's rows
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace paratorch::async {

/// Rows [row_begin, row_end) of parameter `param` (index in model order).
struct Piece {
  int server = 0;
  size_t param = 0;
  std::string name;  // the parameter's full name
  int64_t row_begin = 0, row_end = 0;
  int64_t numel = 0;
  /// Unique key for optimizer state and checkpoints: the name when the piece
  /// is the whole tensor, else "<name>@rows<a>-<b>".
  std::string key;
};

struct ShardPlan {
  int servers = 1;
  std::vector<Piece> pieces;  // in key order: servers ascending
  std::vector<Piece> pieces_of(int server) const;
  int64_t numel_of(int server) const;
};

/// Contiguous key ranges over `servers`, balanced by bytes (row granularity).
/// A 0-dim tensor counts as one row.
ShardPlan plan_shards(const std::vector<std::pair<std::string, torch::Tensor>>& params, int servers);

/// The rows of `full` a piece covers, as a view (0-dim tensors: the tensor).
torch::Tensor piece_view(const torch::Tensor& full, const Piece& piece);

/// `pieces`' part of tensors kept whole by parameter name (a checkpoint of
/// any layout): "<name>" becomes each piece's "<key>", and optimizer state
/// "<name>.<kind>" its "<key>.<kind>" (a per-parameter count "<name>.step"
/// whole, for each piece); "step" is kept; other keys (none of these
/// pieces', or "trainer.*") are left out. Views of `whole`.
std::map<std::string, torch::Tensor> pieces_from_whole(const std::map<std::string, torch::Tensor>& whole,
                                                       const std::vector<Piece>& pieces);

/// The reverse, over every server's pieces at once: pieces keyed "<name>",
/// "<name>@rows<a>-<b>" (optionally followed by ".<kind>") joined by rows
/// into whole tensors keyed "<name>" ("<name>.<kind>"); other keys ("step")
/// are kept. RuntimeFailure naming the rows missing or overlapping when the
/// pieces of a tensor do not tile it.
std::map<std::string, torch::Tensor> whole_from_pieces(const std::map<std::string, torch::Tensor>& pieces);

}  // namespace paratorch::async
