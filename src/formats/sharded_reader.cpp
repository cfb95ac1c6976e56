// src/formats/sharded_reader.cpp — the index parsed and checked, and whole
// tensors assembled from the pieces that hold them (see sharded_checkpoint.h).
#include "formats/atomic_file.h"
#include "formats/safetensors.h"
#include "formats/sharded_checkpoint.h"
#include <paratorch/errors.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <unistd.h>

namespace paratorch::formats {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

[[noreturn]] void bad(const std::string& what, const std::string& problem) {
  throw RuntimeFailure("paratorch: " + what + ": " + problem);
}

int64_t product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// The elements of one tp rank's shard of a tensor shaped `shape`.
int64_t shard_numel(const std::vector<int64_t>& shape, const PieceRegion& r) {
  return r.split_dim < 0 ? product(shape) : product(shape) / r.split_size;
}

PieceRecord parse_piece(const std::string& section, const std::string& name, const json& tensor, const json& p,
                        const ShardedIndex& index, const std::string& what) {
  PieceRecord r;
  r.section = section;
  r.name = name;
  r.whole_shape = tensor.at("shape").get<std::vector<int64_t>>();
  r.dtype = tensor.at("dtype").get<std::string>();
  r.region.split_dim = p.at("split_dim").get<int>();
  r.region.split_parts = p.at("split_parts").get<int>();
  r.region.split_size = p.at("split_size").get<int>();
  r.region.split_rank = p.at("split_rank").get<int>();
  r.region.flat_offset = p.at("flat_offset").get<int64_t>();
  r.numel = p.at("numel").get<int64_t>();
  r.file = p.at("file").get<std::string>();
  r.key = p.at("key").get<std::string>();
  r.fnv1a64 = p.at("fnv1a64").get<std::string>();
  const std::string label = "tensor '" + name + "' (" + section + ")";
  if (safetensors_dtype_size(r.dtype) == 0) bad(what, label + " has unknown dtype '" + r.dtype + "'");
  for (int64_t d : r.whole_shape)
    if (d < 0) bad(what, label + " has a negative dimension");
  const auto& g = r.region;
  if (g.split_dim >= static_cast<int>(r.whole_shape.size()) || g.split_dim < -1 || g.split_parts < 1 ||
      g.split_size < 1 || g.split_rank < 0 || g.split_rank >= g.split_size ||
      (g.split_dim >= 0 && r.whole_shape[g.split_dim] % (int64_t{g.split_parts} * g.split_size) != 0))
    bad(what, label + " has a piece whose split does not fit its shape");
  if (g.flat_offset < 0 || r.numel < 0 || g.flat_offset + r.numel > shard_numel(r.whole_shape, g))
    bad(what, label + " has a piece beyond the end of its shard");
  if (!index.file_bytes.count(r.file)) bad(what, label + " names a file the index does not list: " + r.file);
  return r;
}

// Whole from tp shards: along `dim`, `parts` fused blocks, each the concatenation
// of every rank's sub-block in rank order (ShardSpec's rule).
torch::Tensor assemble(const std::vector<torch::Tensor>& shards, int dim, int parts) {
  std::vector<torch::Tensor> blocks;
  for (int p = 0; p < parts; ++p)
    for (const auto& shard : shards) blocks.push_back(shard.chunk(parts, dim)[p]);
  return torch::cat(blocks, dim);
}

}  // namespace

ShardedIndex parse_index(const std::string& text, const std::string& what) {
  const json root = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) bad(what, "not JSON");
  const auto format = root.find("format");
  if (format == root.end() || *format != "paratorch-sharded-checkpoint")
    bad(what, "not a paratorch sharded checkpoint index");
  const auto version = root.find("version");
  if (version == root.end() || *version != 1)
    bad(what, "index version " + (version == root.end() ? std::string("(none)") : version->dump()) + ", this build reads 1");
  ShardedIndex index;
  try {
    index.step = root.at("step").get<int64_t>();
    index.layout = root.at("layout").get<std::string>();
    index.world_size = root.at("world_size").get<int>();
    index.libtorch = root.value("libtorch", "");
    for (const auto& [file, entry] : root.at("files").items()) {
      if (file.find('/') != std::string::npos || file.rfind("..", 0) == 0) bad(what, "file name '" + file + "' leaves the folder");
      index.file_bytes[file] = entry.at("bytes").get<uint64_t>();
    }
    for (const auto& [section, tensors] : root.at("tensors").items())
      for (const auto& [name, tensor] : tensors.items())
        for (const auto& p : tensor.at("pieces")) index.pieces.push_back(parse_piece(section, name, tensor, p, index, what));
  } catch (const json::exception& e) {
    bad(what, std::string("malformed index (") + e.what() + ")");
  }
  return index;
}

ShardedReader::ShardedReader(const std::string& dir) : dir_(dir) {
  const fs::path path = fs::path(dir) / kIndexFile;
  index_ = parse_index(read_file_bytes(path.string()), path.string());
  for (const auto& [file, bytes] : index_.file_bytes) {
    std::error_code ec;
    const auto size = fs::file_size(fs::path(dir) / file, ec);
    if (ec) bad(dir, "shard file " + file + " is missing (the index lists it)");
    if (size != bytes)
      bad(dir, "shard file " + file + " is " + std::to_string(size) + " bytes, the index says " +
                   std::to_string(bytes) + (size < bytes ? " (truncated?)" : ""));
  }
  for (size_t i = 0; i < index_.pieces.size(); ++i)
    by_tensor_[index_.pieces[i].section + "/" + index_.pieces[i].name].push_back(i);
}

std::vector<std::string> ShardedReader::names(const std::string& section) const {
  std::vector<std::string> out;
  for (const auto& [key, pieces] : by_tensor_)
    if (index_.pieces[pieces.front()].section == section) out.push_back(index_.pieces[pieces.front()].name);
  return out;
}

bool ShardedReader::has(const std::string& section, const std::string& name) const {
  return by_tensor_.count(section + "/" + name) > 0;
}

torch::Tensor ShardedReader::read_piece(const PieceRecord& r) const {
  const std::string path = (fs::path(dir_) / r.file).string();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) bad(path, std::string("cannot open: ") + std::strerror(errno));
  // Header: 8-byte length, then JSON; checked as a whole file of its size.
  auto read_at = [&](void* out, size_t size, uint64_t offset) {
    char* p = static_cast<char*>(out);
    while (size > 0) {
      const ssize_t n = ::pread(fd, p, size, static_cast<off_t>(offset));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ::close(fd);
        bad(path, "short read (truncated?)");
      }
      p += n, size -= static_cast<size_t>(n), offset += static_cast<uint64_t>(n);
    }
  };
  uint8_t length[8];
  read_at(length, 8, 0);
  uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i) header_length = (header_length << 8) | length[i];
  const uint64_t file_size = index_.file_bytes.at(r.file);
  if (header_length > kMaxSafetensorsHeaderBytes || header_length > file_size - 8) {
    ::close(fd);
    bad(path, "header length runs past the end of the file (not a shard, or corrupt)");
  }
  std::string head(8 + header_length, '\0');
  read_at(head.data(), head.size(), 0);
  // The parser reads only the first 8 + N bytes; `file_size` bounds the offsets.
  const SafetensorsHeader header = parse_safetensors_header(reinterpret_cast<const uint8_t*>(head.data()), file_size, path);
  const auto entry = std::find_if(header.entries.begin(), header.entries.end(),
                                  [&](const SafetensorsEntry& e) { return e.name == r.key; });
  const uint64_t bytes = static_cast<uint64_t>(r.numel) * safetensors_dtype_size(r.dtype);
  if (entry == header.entries.end() || entry->dtype != r.dtype || entry->end - entry->begin != bytes) {
    ::close(fd);
    bad(path, "holds no piece '" + r.key + "' of " + r.dtype + "[" + std::to_string(r.numel) + "] (the index says it does)");
  }
  torch::Tensor out = torch::empty({r.numel}, torch::TensorOptions().dtype(torch_dtype_of(r.dtype)));
  read_at(out.data_ptr(), bytes, header.data_start + entry->begin);
  ::close(fd);
  if (hex64(fnv1a64(out.data_ptr(), bytes)) != r.fnv1a64)
    bad(path, "piece '" + r.key + "' does not match its checksum (corrupt)");
  return out;
}

std::vector<std::vector<const PieceRecord*>> ShardedReader::shards_of(const std::string& section,
                                                                   const std::string& name) const {
  auto it = by_tensor_.find(section + "/" + name);
  if (it == by_tensor_.end()) bad(dir_, "holds no tensor '" + name + "' in its " + section + " state");
  const PieceRecord& first = index_.pieces[it->second.front()];
  std::vector<std::vector<const PieceRecord*>> by_shard(first.region.split_size);
  for (size_t i : it->second) {
    const PieceRecord& r = index_.pieces[i];
    if (r.region.split_dim != first.region.split_dim || r.region.split_parts != first.region.split_parts ||
        r.region.split_size != first.region.split_size || r.dtype != first.dtype || r.whole_shape != first.whole_shape)
      bad(dir_, "pieces of tensor '" + name + "' disagree on its shape, dtype or split");
    by_shard[r.region.split_rank].push_back(&r);
  }
  return by_shard;
}

torch::Tensor ShardedReader::read_shard(const std::string& name, std::vector<const PieceRecord*> pieces, int s) const {
  const PieceRecord& first = *pieces.front();
  const int64_t shard = shard_numel(first.whole_shape, first.region);
  std::sort(pieces.begin(), pieces.end(),
            [](const PieceRecord* a, const PieceRecord* b) { return a->region.flat_offset < b->region.flat_offset; });
  torch::Tensor flat = torch::empty({shard}, torch::TensorOptions().dtype(torch_dtype_of(first.dtype)));
  int64_t covered = 0;
  for (const PieceRecord* r : pieces) {
    if (r->region.flat_offset != covered)
      bad(dir_, "tensor '" + name + "' is not covered by its pieces (shard " + std::to_string(s) + ": " +
                    (r->region.flat_offset > covered ? "elements " + std::to_string(covered) + ".." +
                                                           std::to_string(r->region.flat_offset) + " missing"
                                                     : "two pieces overlap at element " + std::to_string(r->region.flat_offset)) +
                    ")");
    flat.narrow(0, covered, r->numel).copy_(read_piece(*r));
    covered += r->numel;
  }
  if (covered != shard)
    bad(dir_, "tensor '" + name + "' is not covered by its pieces (shard " + std::to_string(s) + ": elements " +
                  std::to_string(covered) + ".." + std::to_string(shard) + " missing)");
  std::vector<int64_t> shape = first.whole_shape;
  if (first.region.split_dim >= 0) shape[first.region.split_dim] /= first.region.split_size;
  return flat.view(shape);
}

torch::Tensor ShardedReader::whole(const std::string& section, const std::string& name) const {
  const auto by_shard = shards_of(section, name);
  std::vector<torch::Tensor> shards;
  for (size_t s = 0; s < by_shard.size(); ++s) {
    if (by_shard[s].empty())
      bad(dir_, "tensor '" + name + "' is not covered by its pieces (shard " + std::to_string(s) + " has none)");
    shards.push_back(read_shard(name, by_shard[s], static_cast<int>(s)));
  }
  const PieceRegion& split = by_shard.front().front()->region;
  return split.split_dim < 0 ? shards.front() : assemble(shards, split.split_dim, split.split_parts);
}

torch::Tensor ShardedReader::part(const std::string& section, const std::string& name, const PieceRegion& want) const {
  const auto by_shard = shards_of(section, name);
  const PieceRegion& split = by_shard.front().front()->region;
  const bool same = want.split_dim >= 0 && split.split_dim == want.split_dim && split.split_parts == want.split_parts &&
                    split.split_size == want.split_size && want.split_rank < split.split_size;
  if (!same) return whole(section, name);
  if (by_shard[want.split_rank].empty())
    bad(dir_, "tensor '" + name + "' is not covered by its pieces (shard " + std::to_string(want.split_rank) + " has none)");
  return read_shard(name, by_shard[want.split_rank], want.split_rank);
}

}  // namespace paratorch::formats
