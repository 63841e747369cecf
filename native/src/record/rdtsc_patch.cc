#include "record/rdtsc_patch.h"

#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <time.h>
#include <x86intrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "core/memory_map.h"
#include "core/remote_syscalls.h"
#include "core/stub_layout.h"
#include "core/syscall_buffer_abi.h"

namespace rwd {
namespace {

constexpr uint64_t kPage = 4096;
constexpr int kRdtscLen = 2;  // 0f 31
// How far around a site branches into it are looked for (false positives only cost a patch).
constexpr uint64_t kBranchWindow = 128;
// A stub page within this distance of a site reaches it and is reached by a rel32 jump.
constexpr int64_t kReach = (int64_t(1) << 31) - 2 * int64_t(kPage);

// An rdtsc with the instruction before or after it: together long enough for a jump (5 bytes).
// An instruction before it is run again when the task resumes at the patch (the trap came after
// it): each is one that gives the same result a second time.
struct Pattern {
  uint8_t before[5];
  uint8_t beforeLen;
  uint8_t after[4];
  uint8_t afterLen;
  bool nop;  // `before` is a nop: a branch to the rdtsc may go to the patch's start instead
};

const Pattern kPatterns[] = {
    {{}, 0, {0x48, 0x89, 0xc1}, 3, false},             // rdtsc; mov %rax,%rcx
    {{}, 0, {0x48, 0xc1, 0xe2, 0x20}, 4, false},       // rdtsc; shl $32,%rdx
    {{0x48, 0x89, 0xe5}, 3, {}, 0, false},             // mov %rsp,%rbp; rdtsc
    {{0x48, 0x89, 0xfb}, 3, {}, 0, false},             // mov %rdi,%rbx; rdtsc
    {{0x0f, 0x1f, 0x44, 0x00, 0x00}, 5, {}, 0, true},  // nopl 0(%rax,%rax,1); rdtsc
};

void put32(std::vector<uint8_t>& out, int64_t v) {
  const auto w = int32_t(v);
  const auto* p = reinterpret_cast<const uint8_t*>(&w);
  out.insert(out.end(), p, p + 4);
}

// Whether a jump or call among `code` (at `at`) may land strictly inside (start, end). Only the
// relative forms: an indirect one cannot be told, as rr cannot either.
bool branchInto(const std::vector<uint8_t>& code, uint64_t at, uint64_t start, uint64_t end) {
  for (size_t i = 0; i + 2 <= code.size(); i++) {
    const uint8_t b = code[i];
    int64_t len = 0, rel = 0;
    if (b == 0xeb || b == 0xe3 || (b >= 0x70 && b < 0x80)) {
      len = 2;
      rel = int8_t(code[i + 1]);
    } else if ((b == 0xe8 || b == 0xe9) && i + 5 <= code.size()) {
      len = 5;
      int32_t r;
      memcpy(&r, &code[i + 1], 4);
      rel = r;
    } else if (b == 0x0f && i + 6 <= code.size() && code[i + 1] >= 0x80 && code[i + 1] < 0x90) {
      len = 6;
      int32_t r;
      memcpy(&r, &code[i + 2], 4);
      rel = r;
    }
    if (!len) continue;
    const uint64_t target = at + i + uint64_t(len + rel);
    if (target > start && target < end) return true;
  }
  return false;
}

// A free page for stubs below the lowest mapping of the file holding `site` (where neither the
// heap nor the program's own mappings grow), within reach of it; 0 if none.
uint64_t freePageNear(const std::vector<MapsEntry>& maps, const MapsEntry& site) {
  uint64_t base = site.start;
  for (const MapsEntry& m : maps) {
    if (site.inode && m.inode == site.inode && m.dev == site.dev && m.name == site.name) {
      base = std::min(base, m.start);
    }
  }
  // Gaps below `base`, nearest first.
  for (size_t i = maps.size(); i-- > 0;) {
    if (maps[i].start > base) continue;
    const uint64_t below = i ? maps[i - 1].end : 0x10000;
    const uint64_t top = std::min(maps[i].start, base);
    if (top >= below + kPage && top - kPage >= 0x10000) {
      return top - kPage;
    }
    if (i && int64_t(site.start - maps[i - 1].end) >= kReach) return 0;
  }
  return 0;
}

uint64_t rawNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_RAW, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

}  // namespace

TscClock::TscClock() : tsc0_(__rdtsc()), ns0_(rawNs()) {}

// The rate from two readings at least 2 ms apart (the program's start usually took longer).
void TscClock::calibrate() {
  uint64_t ns, tsc;
  do {
    tsc = __rdtsc();
    ns = rawNs();
  } while (ns - ns0_ < 2000000);
  perNs_ = uint64_t(((unsigned __int128)(tsc - tsc0_) << 32) / (ns - ns0_));
}

uint64_t TscClock::now() {
  if (!perNs_) calibrate();
  return tsc0_ + uint64_t(((unsigned __int128)(rawNs() - ns0_) * perNs_) >> 32);
}

void TscClock::params(uint64_t out[3]) {
  if (!perNs_) calibrate();
  out[0] = tsc0_;
  out[1] = ns0_;
  out[2] = perNs_;
}

std::optional<PatchEvent> RdtscPatcher::patch(Task& task, pid_t tgid, uint64_t hook,
                                              const std::vector<pid_t>& others,
                                              const RemoteSyscalls::SignalTaker& taker) {
  Regs regs = task.regs();
  const uint64_t rip = regs.rip;
  Space& space = spaces_[tgid];
  if (space.refused.count(rip)) return std::nullopt;
  const std::vector<MapsEntry> maps = readMemoryMap(task.tid());
  auto in = [&](uint64_t addr) {
    return std::find_if(maps.begin(), maps.end(),
                        [&](const MapsEntry& m) { return m.start <= addr && addr < m.end; });
  };
  auto siteMap = in(rip);
  auto hookMap = in(hook);
  // Never the library's own code (its rdtsc is the hook's way back to the trap).
  if (siteMap == maps.end() || !(siteMap->prot & PROT_EXEC) || siteMap->shared ||
      (hookMap != maps.end() && hookMap->name == siteMap->name)) {
    space.refused.insert(rip);
    return std::nullopt;
  }
  const uint64_t from = std::max(siteMap->start, rip - kBranchWindow);
  const uint64_t to = std::min(siteMap->end, rip + kBranchWindow);
  std::vector<uint8_t> code(to - from);
  if (!task.tryRead(from, code.data(), code.size())) return std::nullopt;
  auto at = [&](uint64_t addr) { return &code[addr - from]; };

  for (const Pattern& p : kPatterns) {
    const uint64_t start = rip - p.beforeLen;
    const uint64_t end = rip + kRdtscLen + p.afterLen;
    if (start < from || end > to || memcmp(at(start), p.before, p.beforeLen) != 0 ||
        memcmp(at(rip + kRdtscLen), p.after, p.afterLen) != 0) {
      continue;
    }
    if (!p.nop && branchInto(code, from, start, end)) continue;
    // A thread stopped inside the bytes to patch would resume in the middle of the jump.
    for (pid_t other : others) {
      user_regs_struct r;
      if (ptrace(PTRACE_GETREGS, other, nullptr, &r) < 0 || (r.rip > start && r.rip < end)) {
        return std::nullopt;  // perhaps at its next trap
      }
    }

    // The stub: the instruction before (not a nop), the hook called below the red zone, the
    // instruction after, and back.
    std::vector<uint8_t> stub;
    if (!p.nop) stub.insert(stub.end(), p.before, p.before + p.beforeLen);
    const uint8_t skipRedZone[] = {0x48, 0x8d, 0x64, 0x24, 0x80};  // lea -0x80(%rsp),%rsp
    stub.insert(stub.end(), skipRedZone, skipRedZone + sizeof skipRedZone);
    const size_t callAt = stub.size();
    stub.insert(stub.end(), {0xff, 0x15});  // call *slot(%rip)
    put32(stub, 0);
    const uint8_t back[] = {0x48, 0x8d, 0xa4, 0x24, 0x80, 0x00, 0x00, 0x00};  // lea 0x80(%rsp)
    stub.insert(stub.end(), back, back + sizeof back);
    stub.insert(stub.end(), p.after, p.after + p.afterLen);
    const size_t jmpAt = stub.size();
    stub.push_back(0xe9);  // jmp end
    put32(stub, 0);

    // A page of stubs within reach, its first word the hook's address.
    PatchEvent ev;
    StubPage* page = nullptr;
    for (StubPage& s : space.pages) {
      if (s.used + stub.size() <= kPage && std::abs(int64_t(s.addr - start)) < kReach) page = &s;
    }
    if (!page) {
      const uint64_t addr = freePageNear(maps, *siteMap);
      if (!addr || std::abs(int64_t(addr - start)) >= kReach) break;
      RemoteSyscalls remote(task, RWD_TRAMPOLINE, taker);
      remote.claimOrigin(kRewindSyscallIp);
      if (remote.call(SYS_mmap, addr, kPage, PROT_READ | PROT_EXEC,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, uint64_t(-1),
                      0) != long(addr)) {
        break;
      }
      space.pages.push_back(StubPage{addr, 16});
      page = &space.pages.back();
      ev.page = addr;
      const auto* h = reinterpret_cast<const uint8_t*>(&hook);
      ev.writes.push_back(MemoryWrite{addr, {h, h + sizeof hook}});
    }
    const uint64_t stubAt = page->addr + page->used;
    page->used += uint32_t((stub.size() + 15) & ~size_t(15));
    const int64_t slotRel = int64_t(page->addr - (stubAt + callAt + 6));
    memcpy(&stub[callAt + 2], &slotRel, 4);
    const int64_t backRel = int64_t(end - (stubAt + jmpAt + 5));
    memcpy(&stub[jmpAt + 1], &backRel, 4);
    ev.writes.push_back(MemoryWrite{stubAt, stub});

    // The site: a jump to the stub, padded; after a nop, the rdtsc becomes a jump to the start.
    std::vector<uint8_t> site{0xe9};
    put32(site, int64_t(stubAt - (start + 5)));
    site.resize(end - start, 0x90);
    if (p.nop) {
      site[rip - start] = 0xeb;
      site[rip - start + 1] = uint8_t(int8_t(int64_t(start) - int64_t(rip + 2)));
    }
    ev.writes.push_back(MemoryWrite{start, site});

    for (const MemoryWrite& w : ev.writes) task.write(w.addr, w.data.data(), w.data.size());
    ev.tid = uint32_t(task.tid());
    ev.site = rip;
    ev.resume = start;
    regs.rip = start;
    task.setRegs(regs);
    return ev;
  }
  space.refused.insert(rip);
  return std::nullopt;
}

void RdtscPatcher::onFork(pid_t parent, pid_t child) {
  auto it = spaces_.find(parent);
  if (it != spaces_.end()) spaces_[child] = it->second;
}

void RdtscPatcher::forget(pid_t tgid) { spaces_.erase(tgid); }

}  // namespace rwd
