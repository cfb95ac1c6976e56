// src/parallel/compression/sign_allreduce.h — the error-compensated 1-bit
// all-reduce of 1-bit Adam (Tang et al., 2021, §4: compressed reduce-scatter,
// then compressed all-gather).
//
// The vector is cut into one chunk per rank (rank j serves chunk j), and
// every chunk into blocks of up to kMaxBlock values, each with its own scale (so a
// block of small values is not drowned by a block of large ones):
//   worker:  b = x + e_w;  per block s = mean|b|;  send sign(b) (1 bit a
//            value) and the scales;  e_w = b - s·sign(b)
//   server j: a = mean over ranks i of s_i·sign_i (chunk j);  b = a + e_s;
//            per block s' = mean|b|;  send sign(b) and s' to every rank;
//            e_s = b - s'·sign(b)
//   everyone: x = every chunk's s'·sign
// Signs and scales go worker → server through all-to-alls and back through
// all-gathers, signs packed 8 to a byte. So a rank sends about
// 2·(p-1)/p·n·(1/8 + 4/kMaxBlock) bytes, where an fp32 all-reduce sends
// 2·(p-1)/p·4n: 1/31.5. mean|b| is the scale that minimises |b - s·sign(b)|²
// (Karimireddy et al., 2019). Every rank ends with the same x.
#pragma once
#include <paratorch/communicator.h>

#include <torch/torch.h>

namespace paratorch::compression {

/// Bit k of byte i is 1 when x[8i + k] >= 0. x.numel() must be a multiple of 8.
torch::Tensor pack_signs(const torch::Tensor& x);
/// The inverse: ±1 in fp32, 8 per byte.
torch::Tensor unpack_signs(const torch::Tensor& bytes);

class SignAllReduce {
 public:
  /// Values per scale: at most kMaxBlock, fewer when each rank's chunk is
  /// smaller (whole bytes), so small vectors are not padded far.
  static constexpr int64_t kMaxBlock = 2048;
  /// For vectors of `numel` elements over a group of `ranks`.
  SignAllReduce(int64_t numel, int ranks);
  /// Replaces x (fp32, contiguous, numel() or padded() elements: the first
  /// numel() count) with the compressed average over the group, the same on
  /// every rank.
  void run(Communicator& comm, torch::Tensor x);
  int64_t numel() const { return numel_; }
  /// numel() rounded up to whole blocks in every rank's chunk.
  int64_t padded() const { return padded_; }
  /// Error compensation: the worker's (padded length) and the server's (one chunk).
  torch::Tensor worker_error, server_error;

 private:
  int64_t numel_, padded_, chunk_, block_;
  int ranks_;
  // Buffers kept between calls (fresh ones page-fault in every step).
  torch::Tensor sent_, received_, gathered_, average_, server_packed_;
  torch::Tensor worker_scales_, received_scales_, server_scales_, gathered_scales_;
};

}  // namespace paratorch::compression
