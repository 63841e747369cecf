// The kernel's per-task text files of "Key:<tab>value" lines that the engine reads: one reader,
// one function per file kind.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace rwd {

class ProcFields {
 public:
  explicit ProcFields(const std::string& path);
  // The value after "Key:", or nullptr if the file (gone with its task) has no such line.
  const std::string* find(const std::string& key) const;
  // The value read as a number in `base`, `absent` if there is none.
  int64_t number(const std::string& key, int base, int64_t absent) const;
  // The value read as numbers separated by blanks (NSpid: 123 1).
  std::vector<int64_t> numbers(const std::string& key) const;

 private:
  std::map<std::string, std::string> fields_;
};

// /proc/TID/status: NSpid, NStgid, SigBlk, SigIgn, SigCgt...
ProcFields procStatus(pid_t tid);
// /proc/TID/fdinfo/FD: pos, flags, and what a descriptor's kind adds (map_type of a bpf map).
ProcFields procFdinfo(pid_t tid, uint64_t fd);

}  // namespace rwd
