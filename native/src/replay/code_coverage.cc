#include "replay/code_coverage.h"

#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>

#include <algorithm>

#include "core/memory_map.h"
#include "core/remote_syscalls.h"

namespace rwd {
namespace {

constexpr uint64_t kPage = 4096;

uint64_t pageOf(uint64_t addr) { return addr & ~(kPage - 1); }

const CodeRange* rangeOf(const std::vector<CodeRange>& ranges, uint64_t addr) {
  for (const CodeRange& r : ranges) {
    if (addr >= r.start && addr < r.end) return &r;
  }
  return nullptr;
}

constexpr uint64_t kSegvBit = uint64_t(1) << (SIGSEGV - 1);

bool overlaps(const std::vector<CodeRange>& ranges, uint64_t addr, uint64_t len) {
  for (const CodeRange& r : ranges) {
    if (addr < r.end && r.start < addr + len) return true;
  }
  return false;
}

// The program's code: executable mappings of files (its executable and libraries, which
// replay maps from the trace's blobs). Left out: the replay stub, whose syscall instruction
// replay runs, and anonymous code (the vDSO's copy, JIT code, replay's trampolines), whose
// breakpoints are then never skipped.
std::vector<CodeRange> codeRanges(pid_t pid, uint64_t gadget) {
  std::vector<CodeRange> out;
  for (const MapsEntry& m : readMemoryMap(pid)) {
    if (!(m.prot & PROT_EXEC) || m.inode == 0 || (gadget >= m.start && gadget < m.end)) continue;
    out.push_back(CodeRange{m.start, m.end, m.prot});
  }
  return out;
}

}  // namespace

void CodeCoverage::mark(Task& task, uint64_t gadget, uint64_t segment,
                        const std::vector<pid_t>& threads) {
  RemoteSyscalls remote(task, gadget);
  if (tracking_.on) {
    // Every segment from the last mark to this one ran in this process: a complete stretch.
    Stretch& s = known_[tracking_.since];
    if (segment > s.end) s = Stretch{segment, tracking_.ran, tracking_.ranges};
    // Whole mappings again: /proc/PID/maps shows them split by what was given back.
    giveBack(remote);
  }
  if (handlerBlocksSegv_) return;
  for (pid_t tid : threads) {
    uint64_t mask = 0;
    if (ptrace(PTRACE_GETSIGMASK, tid, sizeof mask, &mask) < 0 || (mask & kSegvBit)) return;
  }
  tracking_ = CodeTracking{true, segment, codeRanges(task.tid(), gadget), {}, {}};
  for (const CodeRange& r : tracking_.ranges) {
    remote.check("taking execute permission from code", SYS_mprotect, r.start, r.end - r.start,
                 uint64_t(r.prot & ~PROT_EXEC));
  }
  arrived(remote.savedRegs().rip);
}

void CodeCoverage::arrived(uint64_t rip) {
  if (tracking_.on && rangeOf(tracking_.ranges, rip)) tracking_.ran.insert(pageOf(rip));
}

bool CodeCoverage::onFault(Task& task, uint64_t gadget) {
  if (!tracking_.on) return false;
  siginfo_t si = task.siginfo();
  if (si.si_signo != SIGSEGV || si.si_code != SEGV_ACCERR) return false;
  uint64_t addr = uint64_t(si.si_addr);
  uint64_t rip = task.regs().rip;
  // A fetch: of the instruction at rip, or of its tail on the next page. Any other access is
  // the program's own fault.
  bool fetch = pageOf(addr) == pageOf(rip) || (addr > rip && addr < rip + 16);
  const CodeRange* range = rangeOf(tracking_.ranges, addr);
  uint64_t page = pageOf(addr);
  if (!fetch || !range || tracking_.opened.count(page)) return false;
  RemoteSyscalls(task, gadget)
      .check("giving code its permissions back", SYS_mprotect, page, kPage, uint64_t(range->prot));
  tracking_.opened.insert(page);
  tracking_.ran.insert(page);
  return true;
}

void CodeCoverage::beforeSyscall(Task& task, uint64_t gadget, long nr, const uint64_t args[6]) {
  if (nr == SYS_rt_sigaction && args[1]) {
    uint64_t act[4] = {};  // the kernel's sigaction: handler, flags, restorer, mask
    // A handler blocks its own signal while it runs, unless SA_NODEFER. Unreadable: assume so.
    bool read = task.tryRead(args[1], act, sizeof act);
    bool blocksSegv = (act[3] & kSegvBit) || (args[0] == SIGSEGV && !(act[1] & SA_NODEFER));
    if (!read || (act[0] > 1 && blocksSegv)) handlerBlocksSegv_ = true;
  }
  if (!tracking_.on) return;
  bool disturbs = handlerBlocksSegv_;
  switch (nr) {
    case SYS_rt_sigprocmask:  // blocking SIGSEGV
      if (args[1] && args[0] != SIG_UNBLOCK) {
        uint64_t set = 0;
        disturbs |= !task.tryRead(args[1], &set, sizeof set) || (set & kSegvBit);
      }
      break;
    case SYS_rt_sigaction:  // SIGSEGV's handler
      disturbs |= args[0] == SIGSEGV && args[1];
      break;
    case SYS_mmap:  // only a fixed mapping replaces what was there
      disturbs = (args[3] & (MAP_FIXED | MAP_FIXED_NOREPLACE)) &&
                 overlaps(tracking_.ranges, args[0], args[1]);
      break;
    case SYS_mprotect:
    case SYS_pkey_mprotect:
    case SYS_munmap:
      disturbs = overlaps(tracking_.ranges, args[0], args[1]);
      break;
    case SYS_mremap:
      disturbs = overlaps(tracking_.ranges, args[0], args[1]) ||
                 ((args[3] & MREMAP_FIXED) && overlaps(tracking_.ranges, args[4], args[2]));
      break;
    case SYS_clone:
      disturbs = !(args[0] & CLONE_THREAD);
      break;
    case SYS_clone3: {
      uint64_t flags = 0;  // the first field of struct clone_args
      disturbs = !task.tryRead(args[0], &flags, sizeof flags) || !(flags & CLONE_THREAD);
      break;
    }
    case SYS_fork:
    case SYS_vfork:
    case SYS_execve:
    case SYS_execveat:
    case SYS_shmat:
    case SYS_remap_file_pages:
      disturbs = true;
      break;
    default:
      break;
  }
  if (!disturbs) return;
  RemoteSyscalls remote(task, gadget);
  giveBack(remote);
}

// Gives all the followed code its permissions back; nothing is followed any more.
void CodeCoverage::giveBack(RemoteSyscalls& remote) {
  for (const CodeRange& r : tracking_.ranges) {
    remote.check("giving code its permissions back", SYS_mprotect, r.start, r.end - r.start,
                 uint64_t(r.prot));
  }
  tracking_ = CodeTracking{};
}

bool CodeCoverage::followsFixedCode(uint64_t addr) const {
  const CodeRange* r = tracking_.on ? rangeOf(tracking_.ranges, addr) : nullptr;
  return r && !(r->prot & PROT_WRITE);
}

bool CodeCoverage::mayHaveRun(const std::vector<uint64_t>& addrs, uint64_t first, uint64_t last,
                              bool upToNow) const {
  auto missed = [&](const std::set<uint64_t>& ran, const std::vector<CodeRange>& ranges) {
    return std::all_of(addrs.begin(), addrs.end(),
                       [&](uint64_t a) { return rangeOf(ranges, a) && !ran.count(pageOf(a)); });
  };
  for (uint64_t cur = first; cur <= last;) {
    if (upToNow && tracking_.on && tracking_.since <= cur) {
      return !missed(tracking_.ran, tracking_.ranges);
    }
    // Any stretch that takes in segment `cur` will do: what ran in it ran in `cur` or nearby.
    const Stretch* best = nullptr;
    for (auto it = known_.begin(); it != known_.end() && it->first <= cur; ++it) {
      if (it->second.end > cur && (!best || it->second.end > best->end)) best = &it->second;
    }
    if (!best || !missed(best->ran, best->ranges)) return true;
    cur = best->end;
  }
  return false;
}

}  // namespace rwd
