// src/formats/atomic_file.h — files that are either wholly the old version or
// wholly the new one, never half-written (checkpoints: "nothing lost").
//
// write_file_atomic writes `path.tmp.<pid>`, fsyncs it, renames it over
// `path` (atomic on POSIX within one file system) and fsyncs the directory so
// the rename survives a power cut.
//
// Example:
///   paratorch::formats::write_file_atomic("runs/x/manifest.json", json_text);
#pragma once
#include <string>

namespace paratorch::formats {

/// Throws RuntimeFailure naming `path` and the errno text on any failure, and
/// removes its temporary file; `path` is then untouched.
void write_file_atomic(const std::string& path, const std::string& bytes);

/// Whole file as bytes. Throws RuntimeFailure naming `path`.
std::string read_file_bytes(const std::string& path);

/// fsync of a directory (after renames inside it). Throws RuntimeFailure.
void sync_directory(const std::string& dir);

}  // namespace paratorch::formats
