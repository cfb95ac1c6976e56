// paratorch/errors.h — the two kinds of failure paratorch reports.
//
// UsageError: the user asked for something invalid (bad flag, layout that does
// not factor, batch that does not divide). The CLI exits with code 2.
// RuntimeFailure: something went wrong while running (I/O, communication,
// numerical). The CLI exits with code 1.
// Messages always say what to change.
//
/// Usage: catch them apart, as the `paratorch` command does.
///
///   try {
///     paratorch::DistributedDataParallel ddp(model, world.comm(), options);
///     ... train ...
///   } catch (const paratorch::UsageError& e) {      // fix the input, e.g. an option field
///     std::cerr << e.what() << "\n";
///     return 2;
///   } catch (const paratorch::RuntimeFailure& e) {  // a peer died, a deadline passed, I/O failed
///     std::cerr << e.what() << "\n";
///     return 1;
///   }
#pragma once
#include <stdexcept>
#include <string>

namespace paratorch {

/// Invalid input from the user; the message names what to change. Exit code 2.
class UsageError : public std::runtime_error {
 public:
  explicit UsageError(const std::string& what) : std::runtime_error(what) {}
};

/// A failure while running (communication, I/O). Exit code 1.
class RuntimeFailure : public std::runtime_error {
 public:
  explicit RuntimeFailure(const std::string& what) : std::runtime_error(what) {}
};

}  // namespace paratorch
