#include "core/memory_map.h"

#include <sys/mman.h>
#include <sys/sysmacros.h>

#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace rwd {

std::vector<MapsEntry> readMemoryMap(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/maps";
  std::ifstream in(path);
  if (!in) failErrno("open " + path);
  std::vector<MapsEntry> out;
  std::string line;
  while (std::getline(in, line)) {
    MapsEntry e;
    char perms[5] = {};
    unsigned devMajor, devMinor;
    int nameAt = 0;
    if (sscanf(line.c_str(), "%" SCNx64 "-%" SCNx64 " %4s %" SCNx64 " %x:%x %" SCNu64 " %n",
               &e.start, &e.end, perms, &e.offset, &devMajor, &devMinor, &e.inode, &nameAt) < 7) {
      continue;
    }
    e.dev = makedev(devMajor, devMinor);
    if (perms[0] == 'r') e.prot |= PROT_READ;
    if (perms[1] == 'w') e.prot |= PROT_WRITE;
    if (perms[2] == 'x') e.prot |= PROT_EXEC;
    e.shared = perms[3] == 's';
    if (nameAt > 0 && size_t(nameAt) <= line.size()) e.name = line.substr(size_t(nameAt));
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<uint8_t> readAuxv(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/auxv";
  std::ifstream in(path, std::ios::binary);
  if (!in) failErrno("open " + path);
  std::ostringstream s;
  s << in.rdbuf();
  std::string data = s.str();
  return std::vector<uint8_t>(data.begin(), data.end());
}

}  // namespace rwd
