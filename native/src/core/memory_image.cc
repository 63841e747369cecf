#include "core/memory_image.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

#include "core/error.h"
#include "core/memory_map.h"
#include "core/stub_layout.h"

namespace rwd {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kRedZone = 128;

std::vector<pid_t> threadsOf(pid_t tgid) {
  std::vector<pid_t> tids;
  std::string path = "/proc/" + std::to_string(tgid) + "/task";
  DIR* d = opendir(path.c_str());
  if (!d) failErrno("open " + path);
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') tids.push_back(pid_t(std::stol(e->d_name)));
  }
  closedir(d);
  return tids;
}

bool allZero(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (p[i]) return false;
  }
  return true;
}

}  // namespace

uint64_t stoppedStackPointer(pid_t tid) {
  // "NR ARGS... SP PC" in a syscall, "-1 SP PC" elsewhere, "running" when it runs.
  std::ifstream in("/proc/" + std::to_string(tid) + "/syscall");
  std::vector<std::string> words{std::istream_iterator<std::string>(in),
                                 std::istream_iterator<std::string>()};
  if (words.size() < 3) return 0;
  return std::stoull(words[words.size() - 2], nullptr, 16);
}

MemoryImage MemoryImage::capture(pid_t tgid, pid_t through) {
  // Dead stack: from the bottom of the mapping holding a thread's stack pointer to below its
  // red zone.
  std::vector<MapsEntry> maps = readMemoryMap(through);
  MemoryImage image;
  std::vector<std::pair<uint64_t, uint64_t>>& dead = image.dead_;
  for (pid_t tid : threadsOf(tgid)) {
    uint64_t sp = stoppedStackPointer(tid);
    for (const MapsEntry& m : maps) {
      if (sp >= m.start && sp < m.end && sp - m.start > kRedZone) {
        dead.emplace_back(m.start, sp - kRedZone);
      }
    }
  }
  std::string proc = "/proc/" + std::to_string(through);
  int fd = open((proc + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) failErrno("open " + proc + "/mem");
  int pagemap = open((proc + "/pagemap").c_str(), O_RDONLY | O_CLOEXEC);
  if (pagemap < 0) failErrno("open " + proc + "/pagemap");
  std::vector<uint8_t> page(kPage);
  for (const MapsEntry& m : maps) {
    // Not device memory; but shared anonymous memory (named /dev/zero) is the program's.
    bool device = m.name.rfind("/dev/", 0) == 0 && m.name.rfind("/dev/zero", 0) != 0;
    if (!(m.prot & PROT_WRITE) || inStubRange(m.start) || device) continue;
    const bool anonymous = m.inode == 0;
    for (uint64_t at = m.start; at < m.end; at += kPage) {
      // An anonymous page that was never touched (neither present nor swapped) is zero: big
      // reservations cost a look in the page map, not a read of every page.
      uint64_t entry = 0;
      if (anonymous && pread(pagemap, &entry, 8, off_t(at / kPage * 8)) == 8 &&
          !(entry & (3ull << 62))) {
        continue;
      }
      if (pread(fd, page.data(), kPage, off_t(at)) != ssize_t(kPage)) continue;
      for (const auto& [lo, hi] : dead) {
        uint64_t from = std::max(lo, at), to = std::min(hi, at + kPage);
        if (from < to) memset(page.data() + (from - at), 0, to - from);
      }
      if (!allZero(page.data(), kPage)) image.pages_.emplace(at, page);
    }
  }
  close(pagemap);
  close(fd);
  return image;
}

bool MemoryImage::dead(uint64_t addr) const {
  for (const auto& [from, to] : dead_) {
    if (addr >= from && addr < to) return true;
  }
  return false;
}

std::vector<MemoryWord> MemoryImage::changedWords(const MemoryImage& later, size_t max) const {
  static const std::vector<uint8_t> zero(kPage);
  std::vector<uint64_t> addrs;
  for (const auto& [at, unused] : pages_) addrs.push_back(at);
  for (const auto& [at, unused] : later.pages_) addrs.push_back(at);
  std::sort(addrs.begin(), addrs.end());
  addrs.erase(std::unique(addrs.begin(), addrs.end()), addrs.end());
  std::vector<MemoryWord> words;
  for (uint64_t at : addrs) {
    auto a = pages_.find(at), b = later.pages_.find(at);
    const uint8_t* before = a == pages_.end() ? zero.data() : a->second.data();
    const uint8_t* after = b == later.pages_.end() ? zero.data() : b->second.data();
    for (uint64_t off = 0; off < kPage && words.size() < max; off += 8) {
      uint64_t x, y;
      memcpy(&x, before + off, 8);
      memcpy(&y, after + off, 8);
      if (x != y && !dead(at + off) && !later.dead(at + off)) {
        words.push_back(MemoryWord{at + off, y});
      }
    }
    if (words.size() >= max) break;
  }
  return words;
}

}  // namespace rwd
