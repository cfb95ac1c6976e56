// src/formats/sharded_checkpoint.h — the sharded checkpoint format: each
// rank's slices in its own safetensors file, and one JSON index saying where
// every slice of every whole tensor lies (docs/checkpoints.md).
//
// A step folder of this format holds
//   shard-00002-of-00004.safetensors  rank 2's pieces (a rank with none writes no file)
//   config.toml                       the resolved config of the run that wrote it
//   index.json                        written last: format, step, layout, world size;
//                                     every file's size; every tensor's whole shape,
//                                     dtype and pieces, each with its file, byte
//                                     range and FNV-1a 64 checksum
// A piece is a region of a whole tensor: first the tensor-parallel split it
// belongs to (a ShardSpec: dim, fused parts, group size, which rank's shard),
// then a flat range of that shard's row-major elements (a ZeRO shard cuts
// parameters anywhere). A whole tensor is a piece with no split and offset 0.
//
// This file is the format alone (no MPI): writing one rank's file, the index
// as JSON, and reading whole tensors back from any subset of pieces. The
// collective save (every rank writes, rank 0 commits) is train/sharded_save.h.
//
// Example:
///   std::vector<PieceRecord> records = write_shard_file(dir + "/shard-00000-of-00001.safetensors", pieces);
///   ShardedIndex index; index.step = 5; index.add(records); write_index(dir, index);
///   ShardedReader reader(dir);
///   torch::Tensor wte = reader.whole("model", "transformer.wte.weight");
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace paratorch::formats {

/// Where a piece lies in its whole tensor.
struct PieceRegion {
  int split_dim = -1;    // tensor-parallel split dimension; -1: not split
  int split_parts = 1;   // fused blocks along split_dim, each split separately (qkv: 3)
  int split_size = 1;    // ranks the tensor is split over
  int split_rank = 0;    // whose shard this piece belongs to
  int64_t flat_offset = 0;  // first element of the piece in that shard's flattening
  bool operator==(const PieceRegion& o) const;
};

/// One piece a rank writes: `data` (any device, any strides) holds numel()
/// elements of tensor `name` of section `section` ("model" or "optimizer").
struct Piece {
  std::string section;
  std::string name;
  std::vector<int64_t> whole_shape;
  PieceRegion region;
  torch::Tensor data;
};

/// What a reader wants of each parameter, by name: its tensor-parallel
/// shard (the split fields; split_dim -1: the whole tensor). Where the
/// checkpoint holds the same split, only that shard's pieces are read.
using ShardPlan = std::map<std::string, PieceRegion>;

/// A piece as the index records it.
struct PieceRecord {
  std::string section, name;
  std::vector<int64_t> whole_shape;
  std::string dtype;  // safetensors name: "F32", "I64", ...
  PieceRegion region;
  int64_t numel = 0;
  std::string file, key;  // the shard file and the piece's name inside it
  std::string fnv1a64;    // of the piece's bytes
};

/// Writes `pieces` as one safetensors file (streamed: no copy of the data
/// beyond one piece made contiguous on the CPU), fsynced and renamed into
/// place. Returns one record per piece. RuntimeFailure naming the file.
std::vector<PieceRecord> write_shard_file(const std::string& path, const std::vector<Piece>& pieces);

struct ShardedIndex {
  int64_t step = 0;
  std::string layout;  // "dp=2,pp=2,tp=2"
  int world_size = 1;
  std::string libtorch;
  std::map<std::string, uint64_t> file_bytes;  // shard file -> size
  std::vector<PieceRecord> pieces;
};

/// The index as JSON text / parsed back (RuntimeFailure naming `what` for
/// anything malformed or inconsistent: a piece beyond its tensor, pieces of
/// one tensor that disagree on shape or dtype, a file the index lacks).
std::string index_json(const ShardedIndex& index);
ShardedIndex parse_index(const std::string& text, const std::string& what);

/// The file name rank `rank` of `world` writes.
std::string shard_file_name(int rank, int world);
/// The name of the index file, whose presence marks a finished step folder.
inline constexpr const char* kIndexFile = "index.json";

/// FNV-1a 64 over `size` bytes, continuing from `hash` (start: kFnvOffset).
inline constexpr uint64_t kFnvOffset = 0xcbf29ce484222325ull;
uint64_t fnv1a64(const void* bytes, size_t size, uint64_t hash = kFnvOffset);
std::string hex64(uint64_t value);

/// Reads whole tensors from a step folder of this format. Every shard file's
/// size is checked against the index when opened; a piece's bytes are read
/// only when a tensor needing them is asked for, and checked against its
/// checksum then, so a rank reads only the tensors it loads.
class ShardedReader {
 public:
  /// RuntimeFailure naming the folder when index.json is missing or bad, or
  /// a shard file is missing or of the wrong size (truncated).
  explicit ShardedReader(const std::string& dir);
  const ShardedIndex& index() const { return index_; }
  /// Names of `section`'s tensors, sorted.
  std::vector<std::string> names(const std::string& section) const;
  bool has(const std::string& section, const std::string& name) const;
  /// The whole tensor, assembled from its pieces (CPU, contiguous).
  /// RuntimeFailure naming the file and piece for a checksum mismatch or a
  /// region no piece covers.
  torch::Tensor whole(const std::string& section, const std::string& name) const;
  /// Only shard `want.split_rank` of the tensor (shaped as that shard) when
  /// its pieces are split as `want` says (same dim, fused parts and size);
  /// otherwise the whole tensor. Same checks as whole().
  torch::Tensor part(const std::string& section, const std::string& name, const PieceRegion& want) const;

 private:
  torch::Tensor read_piece(const PieceRecord& record) const;
  /// The pieces of one tensor, checked to agree, by the tp shard they belong to.
  std::vector<std::vector<const PieceRecord*>> shards_of(const std::string& section, const std::string& name) const;
  /// Shard `s` of a tensor whose pieces are `pieces`, shaped as that shard.
  torch::Tensor read_shard(const std::string& name, std::vector<const PieceRecord*> pieces, int s) const;
  std::string dir_;
  ShardedIndex index_;
  std::map<std::string, std::vector<size_t>> by_tensor_;  // "section/name" -> pieces
  mutable std::map<std::string, uint64_t> data_start_;    // file -> where its data block begins
};

}  // namespace paratorch::formats
