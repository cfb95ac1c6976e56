// src/data/text_corpus.cpp — see text_corpus.h.
#include "data/text_corpus.h"

#include <paratorch/errors.h>

#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace paratorch::data {

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw RuntimeFailure("paratorch: cannot read text file " + path + ": " + std::strerror(errno));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

namespace {

std::string kjv_cache_path() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  std::string dir = xdg && *xdg ? std::string(xdg) : std::string(home && *home ? home : "/tmp") + "/.cache";
  mkdir(dir.c_str(), 0755);
  dir += "/paratorch";
  mkdir(dir.c_str(), 0755);
  return dir + "/kjv.txt";
}

std::string run_bible_command() {
  std::FILE* pipe = popen("bible 'gen1:1-rev22:21' 2>/dev/null", "r");
  std::string text;
  if (pipe) {
    std::array<char, 1 << 16> buf;
    size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) text.append(buf.data(), n);
    pclose(pipe);
  }
  if (text.size() < 1000000)
    throw RuntimeFailure("paratorch: [data] source = \"kjv\" needs the King James Bible from Debian's "
                         "bible-kjv package (the `bible` command); install it: apt-get install bible-kjv");
  return text;
}

}  // namespace

std::string load_kjv_text() {
  const std::string cache = kjv_cache_path();
  if (access(cache.c_str(), R_OK) == 0) {
    std::string text = read_text_file(cache);
    if (text.size() > 1000000) return text;
  }
  std::string text = run_bible_command();
  // Write-then-rename: a concurrent rank or a crash never leaves half a file.
  std::string tmp = cache + ".tmp." + std::to_string(getpid());
  if (std::FILE* f = std::fopen(tmp.c_str(), "wb")) {
    bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
    ok = std::fclose(f) == 0 && ok;
    if (ok) std::rename(tmp.c_str(), cache.c_str());
    else std::remove(tmp.c_str());
  }
  return text;
}

TextCorpus::TextCorpus(std::string name, std::string text, int seq_len, uint64_t seed)
    : name_(std::move(name)), text_(std::move(text)), seq_len_(seq_len), seed_(seed) {
  split_ = static_cast<int64_t>(text_.size()) * 9 / 10;
  const int64_t need = 2 * (seq_len_ + 1);
  if (split_ < need || static_cast<int64_t>(text_.size()) - split_ < seq_len_ + 1)
    throw UsageError("paratorch: [data] source '" + name_ + "' has " + std::to_string(text_.size()) +
                     " bytes, too few for seq_len " + std::to_string(seq_len_) + " (needs at least " +
                     std::to_string(10 * (seq_len_ + 1)) + ")");
}

models::Batch TextCorpus::windows(const std::vector<int64_t>& ids, int64_t begin, int64_t end,
                                  uint64_t salt) const {
  const int64_t T = seq_len_, n = static_cast<int64_t>(ids.size());
  const int64_t starts = end - begin - T;  // windows of T+1 bytes that fit
  auto tokens = torch::empty({n, T + 1}, torch::kLong);
  auto* out = tokens.data_ptr<int64_t>();
  for (int64_t j = 0; j < n; ++j) {
    int64_t start = begin + static_cast<int64_t>(sample_hash(seed_ ^ salt, ids[static_cast<size_t>(j)]) %
                                                 static_cast<uint64_t>(starts));
    for (int64_t t = 0; t <= T; ++t)
      out[j * (T + 1) + t] = static_cast<unsigned char>(text_[static_cast<size_t>(start + t)]);
  }
  return {tokens.narrow(1, 0, T).contiguous(), tokens.narrow(1, 1, T).contiguous()};
}

models::Batch TextCorpus::train_batch(const std::vector<int64_t>& ids) const {
  return windows(ids, 0, split_, 0);
}

models::Batch TextCorpus::validation_batch(const std::vector<int64_t>& ids) const {
  return windows(ids, split_, static_cast<int64_t>(text_.size()), 0x5eedfa11ULL);
}

double TextCorpus::unigram_entropy() const {
  std::array<double, 256> counts{};
  for (int64_t i = 0; i < split_; ++i) counts[static_cast<unsigned char>(text_[static_cast<size_t>(i)])] += 1;
  double h = 0;
  for (double c : counts)
    if (c > 0) h -= c / static_cast<double>(split_) * std::log(c / static_cast<double>(split_));
  return h;
}

std::string TextCorpus::describe() const {
  char buf[200];
  std::snprintf(buf, sizeof(buf), "%s: %zu bytes (%lld train / %lld validation), byte tokens, unigram entropy %.2f nats",
                name_.c_str(), text_.size(), static_cast<long long>(split_),
                static_cast<long long>(text_.size()) - split_, unigram_entropy());
  return buf;
}

}  // namespace paratorch::data
