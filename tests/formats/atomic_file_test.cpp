// tests/formats/atomic_file_test.cpp — atomic replacement: the new bytes or
// the old ones, never a mix, and never a stray temporary file.
#include <gtest/gtest.h>

#include "formats/atomic_file.h"
#include <paratorch/errors.h>

#include <dirent.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

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

/// Root writes into a chmod 0555 directory, so for root the directory is
/// made read-only by a read-only bind mount of itself, in a child process
/// with its own mount namespace (nothing leaks into the host's mounts; the
/// child is single-threaded, as unshare(CLONE_NEWNS) requires). Returns
/// write_error's message, or sets `skip` when this host does not permit
/// mount namespaces.
std::string write_error_as_root_in_read_only_dir(const std::string& dir, const std::string& path,
                                                 std::string& skip) {
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
  const pid_t child = fork();
  if (child == 0) {
    close(fds[0]);
    std::string out;
    auto step = [&out](bool ok, const char* what) {
      if (!ok && out.empty()) out = std::string("SKIP ") + what + ": " + std::strerror(errno);
      return ok;
    };
    if (step(unshare(CLONE_NEWNS) == 0, "unshare(CLONE_NEWNS)") &&
        step(mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0, "mount --make-rprivate /") &&
        step(mount(dir.c_str(), dir.c_str(), nullptr, MS_BIND, nullptr) == 0, "bind mount") &&
        step(mount(nullptr, dir.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) == 0,
             "read-only remount")) {
      try {
        out = "MESSAGE " + write_error(path, "new");
      } catch (const std::exception& e) {
        out = std::string("MESSAGE unexpected exception: ") + e.what();
      }
    }
    ssize_t ignored = write(fds[1], out.data(), out.size());
    (void)ignored;
    _exit(0);
  }
  close(fds[1]);
  std::string got;
  char buffer[512];
  for (ssize_t n; (n = read(fds[0], buffer, sizeof buffer)) > 0;) got.append(buffer, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  if (got.rfind("SKIP ", 0) == 0) {
    skip = got.substr(5);
    return "";
  }
  if (got.rfind("MESSAGE ", 0) != 0) throw std::runtime_error("the read-only child reported nothing");
  return got.substr(8);
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
  const std::string dir = make_temp_dir(), path = dir + "/state.json";
  write_file_atomic(path, "old");
  std::string message, skip;
  if (geteuid() == 0) {
    message = write_error_as_root_in_read_only_dir(dir, path, skip);
    if (!skip.empty()) GTEST_SKIP() << "running as root, and this host refuses a private read-only mount (" << skip << ")";
    EXPECT_NE(message.find("Read-only file system"), std::string::npos) << message;
  } else {
    ASSERT_EQ(chmod(dir.c_str(), 0555), 0);
    message = write_error(path, "new");
    chmod(dir.c_str(), 0755);
    EXPECT_NE(message.find("Permission denied"), std::string::npos) << message;
  }
  EXPECT_NE(message.find("paratorch: " + path), std::string::npos) << message;
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
