// src/formats/sharded_checkpoint.cpp — writing a rank's shard file and the
// index as JSON, both ways (see sharded_checkpoint.h; reading tensors back is
// sharded_reader.cpp).
#include "formats/sharded_checkpoint.h"

#include "formats/safetensors.h"
#include <paratorch/errors.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <set>
#include <unistd.h>

namespace paratorch::formats {
namespace {

using json = nlohmann::json;

[[noreturn]] void fail_write(const std::string& path, const std::string& step, int error) {
  throw RuntimeFailure("paratorch: " + path + ": cannot " + step + ": " + std::strerror(error));
}

void write_all_or_throw(int fd, const void* bytes, size_t size, const std::string& path) {
  const char* p = static_cast<const char*>(bytes);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error = errno;
      ::close(fd);
      fail_write(path, "write", error);
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
}

std::string piece_key(const Piece& piece) {
  return piece.section + "/" + piece.name + "@" + std::to_string(piece.region.split_rank) + "+" +
         std::to_string(piece.region.flat_offset);
}

// The safetensors header for `pieces` laid out one after another, each 1-D;
// padded with spaces to a multiple of 8 bytes as the format allows.
std::string shard_header(const std::vector<Piece>& pieces, std::vector<PieceRecord>* records) {
  json header = json::object();
  uint64_t offset = 0;
  for (const auto& piece : pieces) {
    PieceRecord r;
    r.section = piece.section;
    r.name = piece.name;
    r.whole_shape = piece.whole_shape;
    r.dtype = safetensors_dtype_of(piece.data.scalar_type(), piece.name);
    r.region = piece.region;
    r.numel = piece.data.numel();
    r.key = piece_key(piece);
    if (header.contains(r.key)) throw UsageError("paratorch: a shard holds two pieces named '" + r.key + "'");
    const uint64_t bytes = static_cast<uint64_t>(r.numel) * piece.data.element_size();
    header[r.key] = {{"dtype", r.dtype}, {"shape", {r.numel}}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    records->push_back(std::move(r));
  }
  header["__metadata__"] = {{"format", "paratorch-shard"}};
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return text;
}

json region_json(const PieceRegion& r) {
  return {{"split_dim", r.split_dim}, {"split_parts", r.split_parts}, {"split_size", r.split_size},
          {"split_rank", r.split_rank}, {"flat_offset", r.flat_offset}};
}

}  // namespace

bool PieceRegion::operator==(const PieceRegion& o) const {
  return split_dim == o.split_dim && split_parts == o.split_parts && split_size == o.split_size &&
         split_rank == o.split_rank && flat_offset == o.flat_offset;
}

uint64_t fnv1a64(const void* bytes, size_t size, uint64_t hash) {
  const auto* p = static_cast<const unsigned char*>(bytes);
  for (size_t i = 0; i < size; ++i) hash = (hash ^ p[i]) * 0x100000001b3ull;
  return hash;
}

std::string hex64(uint64_t value) {
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016" PRIx64, value);
  return hex;
}

std::string shard_file_name(int rank, int world) {
  char name[64];
  std::snprintf(name, sizeof name, "shard-%05d-of-%05d.safetensors", rank, world);
  return name;
}

std::vector<PieceRecord> write_shard_file(const std::string& path, const std::vector<Piece>& pieces) {
  std::vector<PieceRecord> records;
  const std::string header = shard_header(pieces, &records);
  const std::string temp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) fail_write(path, "create temporary file " + temp, errno);
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<uint8_t>(static_cast<uint64_t>(header.size()) >> (8 * i));
  write_all_or_throw(fd, length, 8, temp);
  write_all_or_throw(fd, header.data(), header.size(), temp);
  const std::string file = path.substr(path.find_last_of('/') + 1);
  for (size_t i = 0; i < pieces.size(); ++i) {
    // One piece at a time on the CPU: the copy never exceeds the largest piece.
    const torch::Tensor bytes = pieces[i].data.detach().to(torch::kCPU).contiguous();
    const size_t size = bytes.numel() * bytes.element_size();
    records[i].fnv1a64 = hex64(fnv1a64(bytes.data_ptr(), size));
    records[i].file = file;
    write_all_or_throw(fd, bytes.data_ptr(), size, temp);
  }
  if (::fsync(fd) != 0) {
    const int error = errno;
    ::close(fd);
    fail_write(path, "fsync temporary file " + temp, error);
  }
  if (::close(fd) != 0) fail_write(path, "close temporary file " + temp, errno);
  if (::rename(temp.c_str(), path.c_str()) != 0) fail_write(path, "rename " + temp + " over it", errno);
  return records;
}

std::string index_json(const ShardedIndex& index) {
  json out = {{"format", "paratorch-sharded-checkpoint"}, {"version", 1},
              {"step", index.step},   {"layout", index.layout},
              {"world_size", index.world_size}, {"libtorch", index.libtorch}};
  out["files"] = json::object();
  for (const auto& [file, bytes] : index.file_bytes) out["files"][file] = {{"bytes", bytes}};
  out["tensors"] = json::object();
  for (const auto& r : index.pieces) {
    json& t = out["tensors"][r.section][r.name];
    t["shape"] = r.whole_shape;
    t["dtype"] = r.dtype;
    json piece = region_json(r.region);
    piece.update({{"numel", r.numel}, {"file", r.file}, {"key", r.key}, {"fnv1a64", r.fnv1a64}});
    t["pieces"].push_back(piece);
  }
  return out.dump(1) + "\n";
}

}  // namespace paratorch::formats
