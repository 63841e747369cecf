// The address space of a process as /proc/PID/maps describes it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace rwd {

struct MapsEntry {
  uint64_t start = 0, end = 0;
  int prot = 0;  // PROT_*
  bool shared = false;
  uint64_t offset = 0;
  uint64_t inode = 0;
  dev_t dev = 0;
  std::string name;
};

std::vector<MapsEntry> readMemoryMap(pid_t pid);

// Reads /proc/PID/auxv.
std::vector<uint8_t> readAuxv(pid_t pid);

}  // namespace rwd
