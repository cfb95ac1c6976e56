// src/parallel/checkpoint/checkpoint_pieces.cpp — see checkpoint_pieces.h.
#include "parallel/checkpoint/checkpoint_pieces.h"

namespace paratorch::parallel {

CheckpointPieces::CheckpointPieces(const TpShards& tp, int dp_rank, int dp_size, int world_rank)
    : tp_(tp), dp_rank_(dp_rank), dp_size_(dp_size), world_rank_(world_rank) {}

formats::PieceRegion tp_region(const TpShards& tp, const std::string& name, int64_t flat_offset) {
  const auto& spec = tp.spec(name);
  formats::PieceRegion r;
  if (spec.sharded()) r = {spec.dim, spec.parts, spec.size, spec.rank, 0};
  r.flat_offset = flat_offset;
  return r;
}

formats::PieceRegion CheckpointPieces::region_of(const std::string& name, int64_t flat_offset) const {
  return tp_region(tp_, name, flat_offset);
}

bool CheckpointPieces::tp_writes(const std::string& name) const {
  return tp_.spec(name).sharded() || tp_.group()->rank() == 0;
}

// The replica that writes a tensor every replica holds: the name's hash
// spreads the writes (and the bytes) over the dp ranks.
bool CheckpointPieces::writes_whole(const std::string& name) const {
  const uint64_t h = formats::fnv1a64(name.data(), name.size());
  return tp_writes(name) && static_cast<int>(h % static_cast<uint64_t>(dp_size_)) == dp_rank_;
}

void CheckpointPieces::add(const std::string& section, const std::string& key, const std::string& param,
                           const torch::Tensor& data, int64_t flat_offset) {
  formats::Piece piece;
  piece.section = section;
  piece.name = key;
  const auto& spec = tp_.spec(param);
  const auto& local = held_.at(param).local_shape;
  piece.whole_shape = spec.sharded() ? spec.full_shape(local) : local;
  piece.region = region_of(param, flat_offset);
  piece.data = data.detach();
  pieces_.push_back(std::move(piece));
}

void CheckpointPieces::add_parameter(const std::string& name, const torch::Tensor& local, bool owned) {
  held_[name] = Held{local.sizes().vec(), false, owned};
  if (owned && writes_whole(name)) add("model", name, name, local, 0);
}

void CheckpointPieces::add_parameter_piece(const std::string& name, const std::vector<int64_t>& local_shape,
                                           const torch::Tensor& data, int64_t flat_offset) {
  held_[name] = Held{local_shape, true, true};
  if (tp_writes(name)) add("model", name, name, data, flat_offset);
}

void CheckpointPieces::add_global(const std::string& section, const std::string& name, const torch::Tensor& tensor) {
  if (world_rank_ != 0) return;
  formats::Piece piece;
  piece.section = section;
  piece.name = name;
  piece.whole_shape = tensor.sizes().vec();
  piece.data = tensor.detach();
  pieces_.push_back(std::move(piece));
}

void CheckpointPieces::add_optimizer_state(const std::vector<optim::LocalState>& state) {
  for (const auto& s : state) {
    const auto dot = s.key.rfind('.');
    const auto it = dot == std::string::npos ? held_.end() : held_.find(s.key.substr(0, dot));
    if (it == held_.end()) {
      add_global("optimizer", s.key, s.data);
      continue;
    }
    const std::string& param = it->first;
    const Held& held = it->second;
    if (!held.owned) continue;
    if (s.flat_offset >= 0) {  // a piece of the parameter only this dp rank holds
      if (tp_writes(param)) add("optimizer", s.key, param, s.data, s.flat_offset);
    } else if (s.data.sizes().vec() == held.local_shape) {  // shaped as the parameter here
      if (writes_whole(param)) add("optimizer", s.key, param, s.data, 0);
    } else if (writes_whole(param)) {  // anything else of this parameter (already whole, a scalar): as it is
      formats::Piece piece;
      piece.section = "optimizer";
      piece.name = s.key;
      piece.whole_shape = s.data.sizes().vec();
      piece.data = s.data.detach();
      pieces_.push_back(std::move(piece));
    }
  }
}

}  // namespace paratorch::parallel
