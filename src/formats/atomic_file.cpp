// src/formats/atomic_file.cpp — whole-file reads and atomic whole-file
// replacement (see atomic_file.h), on raw POSIX calls so that every partial
// write, EINTR and fsync result is seen and reported.
#include "formats/atomic_file.h"

#include <paratorch/errors.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace paratorch::formats {

namespace {

[[noreturn]] void fail_file(const std::string& path, const std::string& action, int error) {
  throw RuntimeFailure("paratorch: " + path + ": cannot " + action + ": " + std::strerror(error));
}

/// Writes all of data, resuming after partial writes and signals.
/// Returns 0 or the errno of the failing write.
int write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    // Linux moves at most ~2 GiB per call; ask for less to stay portable.
    const ssize_t written = ::write(fd, data, std::min<size_t>(size, size_t{1} << 30));
    if (written < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    data += written;
    size -= static_cast<size_t>(written);
  }
  return 0;
}

std::string parent_directory(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

void write_file_atomic(const std::string& path, const std::string& bytes) {
  const std::string temp = path + ".tmp." + std::to_string(::getpid());
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) fail_file(path, "create temporary file " + temp, errno);

  int error = write_all(fd, bytes.data(), bytes.size());
  std::string step = "write temporary file " + temp;
  if (error == 0 && ::fsync(fd) != 0) {
    error = errno;
    step = "fsync temporary file " + temp;
  }
  // close() can report a deferred write error (NFS); it is never retried on Linux.
  if (::close(fd) != 0 && error == 0) {
    error = errno;
    step = "close temporary file " + temp;
  }
  if (error == 0 && ::rename(temp.c_str(), path.c_str()) != 0) {
    error = errno;
    step = "rename " + temp + " over it";
  }
  if (error != 0) {
    ::unlink(temp.c_str());
    fail_file(path, step, error);
  }
  sync_directory(parent_directory(path));
}

std::string read_file_bytes(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail_file(path, "open", errno);
  std::string bytes;
  struct stat info {};
  if (::fstat(fd, &info) == 0 && info.st_size > 0) bytes.reserve(static_cast<size_t>(info.st_size));
  char buffer[1 << 16];
  for (;;) {
    const ssize_t got = ::read(fd, buffer, sizeof(buffer));
    if (got == 0) break;
    if (got < 0) {
      if (errno == EINTR) continue;
      const int error = errno;
      ::close(fd);
      fail_file(path, "read", error);
    }
    bytes.append(buffer, static_cast<size_t>(got));
  }
  ::close(fd);
  return bytes;
}

void sync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) fail_file(dir, "open directory to fsync it", errno);
  // EINVAL: this file system cannot sync directories; the rename is as
  // durable as it will ever get there.
  if (::fsync(fd) != 0 && errno != EINVAL) {
    const int error = errno;
    ::close(fd);
    fail_file(dir, "fsync directory", error);
  }
  ::close(fd);
}

}  // namespace paratorch::formats
