// src/cli/args.h — command-line flags of one subcommand, checked strictly.
//
// Each subcommand declares its flags; anything else is a UsageError that
// lists the valid ones. Accepts "--flag value" and "--flag=value".
#pragma once
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace paratorch::cli {

struct FlagSpec {
  std::string name;   // without dashes
  std::string value;  // placeholder shown in help; empty = boolean switch
  std::string help;
};

class Args {
 public:
  /// Throws UsageError on an unknown flag or a missing value.
  Args(const std::string& command, const std::vector<FlagSpec>& specs,
       const std::vector<std::string>& argv);

  bool has(const std::string& name) const { return values_.count(name) > 0; }
  std::optional<std::string> get(const std::string& name) const;
  std::string get_or(const std::string& name, const std::string& fallback) const;
  /// Integer value; UsageError naming the flag when it is not one.
  long long get_int(const std::string& name, long long fallback) const;
  /// Floating-point value; UsageError naming the flag when it is not one.
  double get_double(const std::string& name, double fallback) const;
  /// Every value of a flag given several times (e.g. --set).
  const std::vector<std::string>& all(const std::string& name) const;

 private:
  std::string command_;
  std::map<std::string, std::vector<std::string>> values_;
};

/// "  --layout dp=A,pp=B,tp=C   the layout to check" lines for help text.
std::string format_flags(const std::vector<FlagSpec>& specs);

}  // namespace paratorch::cli
