// src/cli/args.cpp — see args.h.
#include "cli/args.h"

#include <paratorch/errors.h>

#include <sstream>

namespace paratorch::cli {

Args::Args(const std::string& command, const std::vector<FlagSpec>& specs,
           const std::vector<std::string>& argv)
    : command_(command) {
  auto valid = [&] {
    std::string s;
    for (const auto& f : specs) s += (s.empty() ? "--" : ", --") + f.name;
    return s;
  };
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (arg.rfind("--", 0) != 0)
      throw UsageError("paratorch " + command + ": unexpected argument '" + arg +
                       "'; valid flags: " + valid());
    std::string name = arg.substr(2), value;
    bool inline_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      inline_value = true;
    }
    const FlagSpec* spec = nullptr;
    for (const auto& f : specs)
      if (f.name == name) spec = &f;
    if (!spec)
      throw UsageError("paratorch " + command + ": unknown flag --" + name + "; valid flags: " + valid());
    if (!spec->value.empty() && !inline_value) {
      if (i + 1 >= argv.size())
        throw UsageError("paratorch " + command + ": --" + name + " needs a value (" + spec->value + ")");
      value = argv[++i];
    }
    values_[name].push_back(value);
  }
}

std::optional<std::string> Args::get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second.back();
}

std::string Args::get_or(const std::string& name, const std::string& fallback) const {
  return get(name).value_or(fallback);
}

long long Args::get_int(const std::string& name, long long fallback) const {
  auto v = get(name);
  if (!v) return fallback;
  size_t used = 0;
  long long n = 0;
  try {
    n = std::stoll(*v, &used);
  } catch (...) {
    used = 0;
  }
  if (used == 0 || used != v->size())
    throw UsageError("paratorch " + command_ + ": --" + name + " needs an integer, got '" + *v + "'");
  return n;
}

double Args::get_double(const std::string& name, double fallback) const {
  auto v = get(name);
  if (!v) return fallback;
  size_t used = 0;
  double x = 0;
  try {
    x = std::stod(*v, &used);
  } catch (...) {
    used = 0;
  }
  if (used == 0 || used != v->size())
    throw UsageError("paratorch " + command_ + ": --" + name + " needs a number, got '" + *v + "'");
  return x;
}

const std::vector<std::string>& Args::all(const std::string& name) const {
  static const std::vector<std::string> none;
  auto it = values_.find(name);
  return it == values_.end() ? none : it->second;
}

std::string format_flags(const std::vector<FlagSpec>& specs) {
  std::ostringstream out;
  for (const auto& f : specs) {
    std::string left = "--" + f.name + (f.value.empty() ? "" : " " + f.value);
    out << "  " << left << std::string(left.size() < 30 ? 30 - left.size() : 1, ' ') << f.help << "\n";
  }
  return out.str();
}

}  // namespace paratorch::cli
