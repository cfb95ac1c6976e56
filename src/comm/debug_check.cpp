// src/comm/debug_check.cpp — see debug_check.h.
#include "comm/debug_check.h"

#include "comm/mpi_buffers.h"
#include <paratorch/errors.h>

#include <array>
#include <cstring>
#include <sstream>
#include <vector>

namespace paratorch::comm {
namespace {

constexpr int kMaxDims = 8;
constexpr int kNameLen = 24;

struct Signature {
  int64_t sequence;
  int64_t ndim;
  int64_t shape[kMaxDims];
  int64_t peer;
  char op[kNameLen];
  char dtype[kNameLen];
};

Signature signature_of(const OpInfo& info) {
  Signature s;
  std::memset(&s, 0, sizeof(s));
  s.sequence = static_cast<int64_t>(info.sequence);
  s.ndim = static_cast<int64_t>(info.shape.size());
  for (size_t i = 0; i < info.shape.size() && i < kMaxDims; ++i) s.shape[i] = info.shape[i];
  s.peer = info.peer;
  std::strncpy(s.op, info.op.c_str(), kNameLen - 1);
  std::strncpy(s.dtype, info.dtype.c_str(), kNameLen - 1);
  return s;
}

std::string describe(const Signature& s) {
  std::ostringstream o;
  o << s.op << " #" << s.sequence << " " << s.dtype << "[";
  for (int64_t i = 0; i < s.ndim && i < kMaxDims; ++i) o << (i ? "," : "") << s.shape[i];
  o << "]";
  if (s.peer >= 0) o << " root " << s.peer;
  return o.str();
}

bool same(const Signature& a, const Signature& b) { return std::memcmp(&a, &b, sizeof(a)) == 0; }

}  // namespace

void check_collective_agreement(MPI_Comm comm, const OpInfo& info) {
  Signature mine = signature_of(info);
  std::vector<Signature> all(static_cast<size_t>(info.group_size));
  check_mpi(MPI_Allgather(&mine, sizeof(Signature), MPI_BYTE, all.data(), sizeof(Signature),
                          MPI_BYTE, comm),
            "debug signature all_gather");
  bool agree = true;
  for (const auto& s : all) agree = agree && same(s, all[0]);
  if (agree) return;
  std::ostringstream msg;
  msg << "paratorch: PARATORCH_DEBUG: ranks of group '" << info.group
      << "' disagree on a collective:";
  for (size_t r = 0; r < all.size(); ++r)
    msg << "\n  group rank " << r << " (world rank " << info.group_world_ranks[r]
        << "): " << describe(all[r]);
  msg << "\nEvery rank must issue the same collectives, in the same order, with the same "
         "shapes and dtypes.";
  throw RuntimeFailure(msg.str());
}

}  // namespace paratorch::comm
