// src/parallel/compression/sign_allreduce.cpp — see sign_allreduce.h.
#include "parallel/compression/sign_allreduce.h"

#include "parallel/compression/onebit_kernels.h"
#include <paratorch/errors.h>

#include <algorithm>

namespace paratorch::compression {
namespace {

/// b += add (its first add.numel() values), then compresses b block by
/// block: each block's scale into `scales`, its signs into `packed`, and
/// its error b - scale·sign(b) left in b.
void compress(torch::Tensor& b, const torch::Tensor& add, torch::Tensor& packed, torch::Tensor& scales, int64_t block) {
  float* data = b.data_ptr<float>();
  if (add.defined()) add_and_mean_abs(data, add.data_ptr<float>(), add.numel(), 0);
  auto* s = scales.data_ptr<float>();
  auto* bits = packed.data_ptr<uint8_t>();
  for (int64_t k = 0; k < scales.numel(); ++k) {
    float* values = data + k * block;
    s[k] = static_cast<float>(add_and_mean_abs(values, nullptr, 0, block));
    pack_signs_keep_error(values, block, s[k], bits + k * block / 8);
  }
}

/// out (+)= scale_k·sign for each block k of `packed`.
void decompress(const uint8_t* packed, const float* scales, int64_t blocks, int64_t block, float factor, float* out,
                bool accumulate) {
  for (int64_t k = 0; k < blocks; ++k)
    scaled_signs(packed + k * block / 8, block, scales[k] * factor, out + k * block, accumulate);
}

}  // namespace

torch::Tensor pack_signs(const torch::Tensor& x) {
  if (x.numel() % 8 != 0) throw RuntimeFailure("paratorch: pack_signs needs a multiple of 8 values");
  auto b = x.to(torch::kFloat).contiguous().clone();
  auto packed = torch::empty({x.numel() / 8}, torch::TensorOptions().dtype(torch::kByte));
  pack_signs_keep_error(b.data_ptr<float>(), b.numel(), 0.0f, packed.data_ptr<uint8_t>());
  return packed;
}

torch::Tensor unpack_signs(const torch::Tensor& bytes) {
  auto packed = bytes.contiguous();
  auto out = torch::empty({packed.numel() * 8}, torch::TensorOptions().dtype(torch::kFloat));
  scaled_signs(packed.data_ptr<uint8_t>(), out.numel(), 1.0f, out.data_ptr<float>(), false);
  return out;
}

SignAllReduce::SignAllReduce(int64_t numel, int ranks) : numel_(numel), ranks_(ranks) {
  const int64_t per_rank = (numel + ranks - 1) / ranks;
  block_ = std::min(kMaxBlock, std::max<int64_t>(8, (per_rank + 7) / 8 * 8));
  const int64_t unit = block_ * static_cast<int64_t>(ranks);  // whole blocks in every rank's chunk
  padded_ = (numel + unit - 1) / unit * unit;
  chunk_ = padded_ / ranks;
  worker_error = torch::zeros({padded_}, torch::kFloat);
  server_error = torch::zeros({chunk_}, torch::kFloat);
  const auto u8 = torch::TensorOptions().dtype(torch::kByte);
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat);
  sent_ = torch::empty({padded_ / 8}, u8);
  received_ = torch::empty({padded_ / 8}, u8);
  gathered_ = torch::empty({padded_ / 8}, u8);
  server_packed_ = torch::empty({chunk_ / 8}, u8);
  average_ = torch::empty({chunk_}, f32);
  worker_scales_ = torch::empty({padded_ / block_}, f32);
  received_scales_ = torch::empty({padded_ / block_}, f32);
  server_scales_ = torch::empty({chunk_ / block_}, f32);
  gathered_scales_ = torch::empty({padded_ / block_}, f32);
}

void SignAllReduce::run(Communicator& comm, torch::Tensor x) {
  if (comm.size() != ranks_ || (x.numel() != numel_ && x.numel() != padded_) || x.scalar_type() != torch::kFloat ||
      !x.is_contiguous())
    throw RuntimeFailure("paratorch: SignAllReduce was built for " + std::to_string(numel_) + " contiguous fp32 values on " +
                         std::to_string(ranks_) + " ranks, got " + std::to_string(x.numel()) + " on " +
                         std::to_string(comm.size()));
  torch::NoGradGuard no_grad;
  const int64_t blocks_per_chunk = chunk_ / block_;
  // Worker: b = x + e_w compressed block by block; b's error stays in e_w.
  // Chunk j of the signs and scales goes to rank j.
  compress(worker_error, x.view({-1}).narrow(0, 0, numel_), sent_, worker_scales_, block_);
  comm.all_to_all(received_, sent_);  // rank i's signs of my chunk in slot i
  comm.all_to_all(received_scales_, worker_scales_);
  // Server: the average of my chunk over the ranks, plus e_s, compressed; its error stays in e_s.
  for (int i = 0; i < ranks_; ++i)
    decompress(received_.data_ptr<uint8_t>() + i * chunk_ / 8, received_scales_.data_ptr<float>() + i * blocks_per_chunk,
               blocks_per_chunk, block_, 1.0f / static_cast<float>(ranks_), average_.data_ptr<float>(), i > 0);
  compress(server_error, average_, server_packed_, server_scales_, block_);
  // Everyone: every chunk's signs and scales.
  comm.all_gather(gathered_, server_packed_);
  comm.all_gather(gathered_scales_, server_scales_);
  // Straight into x when it has the padded length (1-bit Adam's momentum does).
  auto result = x.numel() == padded_ ? x : torch::empty({padded_}, torch::kFloat);
  decompress(gathered_.data_ptr<uint8_t>(), gathered_scales_.data_ptr<float>(), padded_ / block_, block_, 1.0f,
             result.data_ptr<float>(), false);
  if (!result.is_same(x)) x.copy_(result.narrow(0, 0, numel_));
}

}  // namespace paratorch::compression
