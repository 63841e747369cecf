#include "core/proc_files.h"

#include <fstream>
#include <sstream>

namespace rwd {

ProcFields::ProcFields(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    size_t value = line.find_first_not_of(" \t", colon + 1);
    fields_.emplace(line.substr(0, colon), value == std::string::npos ? "" : line.substr(value));
  }
}

const std::string* ProcFields::find(const std::string& key) const {
  auto it = fields_.find(key);
  return it == fields_.end() ? nullptr : &it->second;
}

int64_t ProcFields::number(const std::string& key, int base, int64_t absent) const {
  const std::string* value = find(key);
  if (!value || value->empty()) return absent;
  return int64_t(strtoull(value->c_str(), nullptr, base));
}

std::vector<int64_t> ProcFields::numbers(const std::string& key) const {
  std::vector<int64_t> out;
  if (const std::string* value = find(key)) {
    std::istringstream fields(*value);
    for (int64_t n; fields >> n;) out.push_back(n);
  }
  return out;
}

ProcFields procStatus(pid_t tid) { return ProcFields("/proc/" + std::to_string(tid) + "/status"); }

ProcFields procFdinfo(pid_t tid, uint64_t fd) {
  return ProcFields("/proc/" + std::to_string(tid) + "/fdinfo/" + std::to_string(fd));
}

}  // namespace rwd
