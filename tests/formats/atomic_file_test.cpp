// tests/formats/atomic_file_test.cpp — atomic replacement: the new bytes or
// the old ones, never a mix, and never a stray temporary file.
#include <gtest/gtest.h>

#include "formats/atomic_file.h"
#include <paratorch/errors.h>

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

using paratorch::formats::read_file_bytes;
using paratorch::formats::write_file_atomic;

namespace {

/// A fresh empty directory per test.
std::string make_temp_dir() {
  std::string pattern = ::testing::TempDir() + "paratorch_atomic_XXXXXX";
  if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
  return pattern;
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d))
      if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") names.push_back(e->d_name);
    closedir(d);
  }
  std::sort(names.begin(), names.end());
  return names;
}

/// The RuntimeFailure message of `write_file_atomic(path, bytes)`, or "" if it succeeded.
std::string write_error(const std::string& path, const std::string& bytes) {
  try {
    write_file_atomic(path, bytes);
  } catch (const paratorch::RuntimeFailure& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(AtomicFile, ReplacesContentAndLeavesNoTemporaryFile) {
  const std::string dir = make_temp_dir(), path = dir + "/state.json";
  write_file_atomic(path, "old contents, longer than the new");
  write_file_atomic(path, "new");
  EXPECT_EQ(read_file_bytes(path), "new");
  EXPECT_EQ(list_dir(dir), std::vector<std::string>{"state.json"});

  std::string big(3 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 131 % 251);
  write_file_atomic(path, big);
  EXPECT_EQ(read_file_bytes(path), big);
  write_file_atomic(path, "");
  EXPECT_EQ(read_file_bytes(path), "");
  EXPECT_EQ(list_dir(dir), std::vector<std::string>{"state.json"});
}

TEST(AtomicFile, MissingOrNonDirectoryParentFailsNamingThePath) {
  const std::string dir = make_temp_dir();
  const std::string missing = dir + "/no/such/dir/file.bin";
  std::string message = write_error(missing, "x");
  EXPECT_NE(message.find("paratorch: " + missing + ": cannot create temporary file"), std::string::npos) << message;
  EXPECT_NE(message.find("No such file or directory"), std::string::npos) << message;

  write_file_atomic(dir + "/plain", "a file, not a directory");
  message = write_error(dir + "/plain/file.bin", "x");
  EXPECT_NE(message.find("Not a directory"), std::string::npos) << message;
  EXPECT_EQ(list_dir(dir), std::vector<std::string>{"plain"});
}

TEST(AtomicFile, FailedRenameRemovesTheTemporaryFileAndKeepsTheOldEntry) {
  // A non-empty directory where the file should go: the temporary file is
  // written, the rename fails, and everything must be as before.
  const std::string dir = make_temp_dir(), target = dir + "/checkpoint";
  ASSERT_EQ(mkdir(target.c_str(), 0755), 0);
  write_file_atomic(target + "/keep", "precious");
  const std::string message = write_error(target, "replacement");
  EXPECT_NE(message.find("paratorch: " + target + ": cannot rename"), std::string::npos) << message;
  EXPECT_EQ(list_dir(dir), std::vector<std::string>{"checkpoint"});
  EXPECT_EQ(read_file_bytes(target + "/keep"), "precious");
}

TEST(AtomicFile, UnwritableDirectoryKeepsTheOldFile) {
  if (geteuid() == 0) GTEST_SKIP() << "root writes into read-only directories";
  const std::string dir = make_temp_dir(), path = dir + "/state.json";
  write_file_atomic(path, "old");
  ASSERT_EQ(chmod(dir.c_str(), 0555), 0);
  const std::string message = write_error(path, "new");
  chmod(dir.c_str(), 0755);
  EXPECT_NE(message.find("Permission denied"), std::string::npos) << message;
  EXPECT_EQ(read_file_bytes(path), "old");
  EXPECT_EQ(list_dir(dir), std::vector<std::string>{"state.json"});
}

TEST(AtomicFile, ReadAndSyncFailuresNameThePath) {
  EXPECT_THROW(read_file_bytes("/nonexistent/file"), paratorch::RuntimeFailure);
  try {
    read_file_bytes(make_temp_dir());  // a directory: open works, read fails
    FAIL();
  } catch (const paratorch::RuntimeFailure& e) {
    EXPECT_NE(std::string(e.what()).find("cannot read: Is a directory"), std::string::npos) << e.what();
  }
  EXPECT_THROW(paratorch::formats::sync_directory("/nonexistent/dir"), paratorch::RuntimeFailure);
  EXPECT_NO_THROW(paratorch::formats::sync_directory(make_temp_dir()));
}

TEST(AtomicFile, UnwritableFileSystemFailsEvenForRoot) {
  const std::string message = write_error("/proc/paratorch_atomic_test", "x");  // procfs refuses new files
  EXPECT_NE(message.find("paratorch: /proc/paratorch_atomic_test: cannot create temporary file"), std::string::npos)
      << message;
}
