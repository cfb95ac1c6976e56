// tests/formats/idx_test.cpp — IDX arrays (hand-made, big-endian) and the
// capped gzip reader: round trips, and every malformed input refused.
#include <gtest/gtest.h>

#include "formats/atomic_file.h"
#include "formats/idx.h"
#include <paratorch/errors.h>

#include <zlib.h>

using namespace paratorch::formats;

namespace {

void put_be32(std::string* out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out->push_back(static_cast<char>((v >> shift) & 0xff));
}

std::string idx_bytes(uint8_t type, const std::vector<uint32_t>& dims, const std::string& payload) {
  std::string out{'\0', '\0', static_cast<char>(type), static_cast<char>(dims.size())};
  for (uint32_t d : dims) put_be32(&out, d);
  return out + payload;
}

/// gzip (window bits 15 + 16) of `raw`, with zlib's deflate.
std::string gzip(const std::string& raw) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&z, raw.size()) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
  z.avail_in = static_cast<uInt>(raw.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

torch::Tensor parse_test_idx(const std::string& bytes) {
  return parse_idx(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "test.idx");
}

void expect_idx_refused(const std::string& bytes, const std::string& problem) {
  try {
    parse_test_idx(bytes);
    ADD_FAILURE() << "accepted an IDX file that should fail with: " << problem;
  } catch (const paratorch::RuntimeFailure& e) {
    EXPECT_NE(std::string(e.what()).find("paratorch: test.idx: " + problem), std::string::npos) << e.what();
  }
}

std::string gunzip_error(const std::string& compressed, size_t cap) {
  try {
    gunzip(compressed, cap, "test.gz");
  } catch (const paratorch::RuntimeFailure& e) {
    return e.what();
  }
  return "";
}

const std::string kU8Image = idx_bytes(0x08, {2, 3}, std::string("\x00\x01\x02\xfd\xfe\xff", 6));

}  // namespace

TEST(Idx, U8ArrayRoundTrips) {
  auto t = parse_test_idx(kU8Image);
  EXPECT_EQ(t.scalar_type(), torch::kByte);
  EXPECT_TRUE(torch::equal(t, torch::tensor({{0, 1, 2}, {253, 254, 255}}, torch::kByte)));
}

TEST(Idx, MultiByteTypesAreBigEndian) {
  EXPECT_TRUE(torch::equal(parse_test_idx(idx_bytes(0x0D, {2}, std::string("\x3f\xc0\x00\x00\xc0\x00\x00\x00", 8))),
                           torch::tensor({1.5f, -2.0f})));
  EXPECT_TRUE(torch::equal(parse_test_idx(idx_bytes(0x0E, {1}, std::string("\x40\x09\x21\xfb\x54\x44\x2d\x18", 8))),
                           torch::tensor({3.141592653589793}, torch::kDouble)));
  EXPECT_TRUE(torch::equal(parse_test_idx(idx_bytes(0x0C, {2}, std::string("\x00\x01\x00\x02\xff\xff\xff\xfe", 8))),
                           torch::tensor({65538, -2}, torch::kInt)));
  EXPECT_TRUE(torch::equal(parse_test_idx(idx_bytes(0x0B, {2}, std::string("\x01\x02\x80\x00", 4))),
                           torch::tensor({258, -32768}, torch::kShort)));
  EXPECT_TRUE(torch::equal(parse_test_idx(idx_bytes(0x09, {2}, std::string("\x7f\x80", 2))),
                           torch::tensor({127, -128}, torch::kChar)));
  EXPECT_EQ(parse_test_idx(idx_bytes(0x08, {0, 28}, "")).sizes(), (std::vector<int64_t>{0, 28}));
}

TEST(Idx, MalformedHeadersAreRefused) {
  expect_idx_refused("", "file is 0 bytes, shorter than the 4-byte IDX magic");
  expect_idx_refused(std::string("\x01\x00\x08\x01", 4) + std::string(4, '\0'), "bad magic 0x01000801");
  expect_idx_refused(gzip(kU8Image), "bad magic 0x1f8b0800: not an IDX file (it is gzipped: read it with read_idx_gz)");
  expect_idx_refused(idx_bytes(0x0A, {1}, "x"), "unknown IDX type byte 0x0a");
  expect_idx_refused(idx_bytes(0x08, {2, 3}, "short"), "has 5 bytes of data but its dimensions [2x3] need 6");
  expect_idx_refused(idx_bytes(0x08, {2, 3}, "sixsix!"), "has 1 bytes beyond the 6");
  expect_idx_refused(std::string("\x00\x00\x08\x03\x00\x00", 6),
                     "file is 6 bytes, too short for the sizes of its 3 dimensions");
  expect_idx_refused(idx_bytes(0x0E, {0xffffffff, 0xffffffff, 0xffffffff}, ""),
                 "dimension sizes overflow 64-bit byte counts at dimension 1");
  expect_idx_refused(idx_bytes(0x08, {0, 0xffffffff, 0xffffffff}, ""),  // zero items, absurd strides
                     "dimension sizes overflow 64-bit byte counts at dimension 2");
}

TEST(Idx, EveryTruncationIsRefused) {
  for (size_t length = 0; length < kU8Image.size(); ++length)
    EXPECT_THROW(parse_idx(reinterpret_cast<const uint8_t*>(kU8Image.data()), length, "t"), paratorch::RuntimeFailure)
        << length;
}

TEST(Gunzip, RoundTripsGzipZlibAndConcatenatedMembers) {
  const std::string raw = kU8Image + std::string(100000, 'z');
  EXPECT_EQ(gunzip(gzip(raw), raw.size(), "t"), raw);
  EXPECT_EQ(gunzip(gzip("ab") + gzip("cd"), 100, "t"), "abcd");  // what `gzip -c a b` writes
  uLongf zlib_size = compressBound(raw.size());
  std::string zlib_data(zlib_size, '\0');
  ASSERT_EQ(compress(reinterpret_cast<Bytef*>(zlib_data.data()), &zlib_size,
                     reinterpret_cast<const Bytef*>(raw.data()), raw.size()),
            Z_OK);
  zlib_data.resize(zlib_size);
  EXPECT_EQ(gunzip(zlib_data, raw.size(), "t"), raw);
  EXPECT_EQ(gunzip(gzip(""), 0, "t"), "");
}

TEST(Gunzip, TruncatedCorruptOversizedAndTrailingDataAreRefused) {
  const std::string compressed = gzip(std::string(200000, 'a') + kU8Image);
  for (size_t length : {size_t{0}, size_t{1}, size_t{10}, compressed.size() / 2, compressed.size() - 1})
    EXPECT_NE(gunzip_error(compressed.substr(0, length), 1 << 20).find("test.gz: compressed data ends early"),
              std::string::npos)
        << length;
  std::string corrupt = compressed;
  corrupt[12] = static_cast<char>(corrupt[12] ^ 0x55);
  EXPECT_NE(gunzip_error(corrupt, 1 << 20), "");
  EXPECT_NE(gunzip_error(compressed, 1000).find("decompresses to more than 1000 bytes"), std::string::npos);
  EXPECT_NE(gunzip_error(compressed + "junk", 1 << 20).find("4 bytes of trailing garbage"), std::string::npos);
  EXPECT_NE(gunzip_error("plain text, not compressed", 100).find("corrupt compressed data"), std::string::npos);
}

TEST(Idx, GzippedFilesAndMissingDatasetFiles) {
  const std::string path = ::testing::TempDir() + "paratorch_test.idx.gz";
  write_file_atomic(path, gzip(kU8Image));
  EXPECT_TRUE(torch::equal(read_idx_gz(path), parse_test_idx(kU8Image)));
  write_file_atomic(path, gzip(kU8Image).substr(0, 20));
  EXPECT_THROW(read_idx_gz(path), paratorch::RuntimeFailure);
  std::remove(path.c_str());
  try {
    read_idx_gz("/usr/share/datasets/no-such-set/train.gz");
    FAIL();
  } catch (const paratorch::RuntimeFailure& e) {
    EXPECT_STREQ(e.what(), "paratorch: /usr/share/datasets/no-such-set/train.gz is missing; install Debian "
                           "package dataset-no-such-set (scripts/bootstrap does)");
  }
  EXPECT_THROW(read_idx_gz("/nonexistent/train.gz"), paratorch::RuntimeFailure);
}
