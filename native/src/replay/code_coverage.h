// Which pages of the debuggee's code ran in stretches of replay, so that going back can skip
// the stretches that cannot have met a breakpoint. Without a branch counter nothing cheaper
// than running a stretch tells whether an instruction ran there; at page granularity the MMU
// does: at a mark the code loses its execute permission, and the first fetch from each page
// faults once, gets the permission back, and is noted. After that the page runs at full speed.
//
// The faults are SIGSEGVs, and the kernel unblocks a blocked SIGSEGV it raises for a fault and
// resets its handler: nothing is followed while the program may have SIGSEGV blocked (a thread's
// mask, or a handler that blocks it while it runs).
//
// A stretch runs from a mark (the start of a segment) to the start of a later segment. Its
// facts hold for any replay of it, replay being deterministic, so they outlive the process that
// learnt them. The protection state belongs to a process and travels with its checkpoints.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <vector>

#include "core/remote_syscalls.h"
#include "core/task.h"

namespace rwd {

struct CodeRange {
  uint64_t start = 0, end = 0;
  int prot = 0;  // as the program mapped it
};

// The protection state of one process.
struct CodeTracking {
  bool on = false;
  uint64_t since = 0;             // segment key of the mark
  std::vector<CodeRange> ranges;  // code without execute permission at the mark
  std::set<uint64_t> opened;      // pages given it back since
  std::set<uint64_t> ran;         // pages run since: opened ones, and where segments began
};

class CodeCoverage {
 public:
  explicit CodeCoverage(uint32_t tgid = 0) : tgid_(tgid) {}

  // The recorded process whose code is followed.
  uint32_t tgid() const { return tgid_; }

  // At the start of segment `segment`, with the task at a stop where syscalls can be injected:
  // closes the stretch that ends here and starts one, which begins at the task's instruction;
  // `threads` are the tids of all of the process's threads.
  void mark(Task& task, uint64_t gadget, uint64_t segment, const std::vector<pid_t>& threads);
  // A segment of the process begins at `rip`.
  void arrived(uint64_t rip);
  // The task stopped for SIGSEGV: true if it was a fetch from code protected here, which
  // now runs again (the caller resumes the task without the signal).
  bool onFault(Task& task, uint64_t gadget);
  // Before the process runs syscall `nr`: one that remaps its code, forks (a thread is no
  // matter: it shares the protections) or execs ends the stretch unknown (the code gets its
  // permission back first, so the kernel and any child see the program's own protections).
  void beforeSyscall(Task& task, uint64_t gadget, long nr, const uint64_t args[6]);

  const CodeTracking& tracking() const { return tracking_; }
  // Whether `addr` is in code followed now that the program cannot write (an int3 there stays
  // until replay takes it out).
  bool followsFixedCode(uint64_t addr) const;
  void setTracking(const CodeTracking& t) { tracking_ = t; }

  // Whether any of `addrs` may have run in segments first..last, as far as the stretches known
  // cover them (and, when `upToNow`, what ran since the mark in the current process, which has
  // reached the moment in segment `last` that a caller asks about).
  bool mayHaveRun(const std::vector<uint64_t>& addrs, uint64_t first, uint64_t last,
                  bool upToNow) const;

 private:
  struct Stretch {
    uint64_t end = 0;  // first segment after it
    std::set<uint64_t> ran;
    std::vector<CodeRange> ranges;
  };
  void giveBack(RemoteSyscalls& remote);

  uint32_t tgid_;
  CodeTracking tracking_;
  // A handler that blocks SIGSEGV while it runs was installed at some point of the recording:
  // from then on (and, conservatively, anywhere replay goes afterwards) nothing is followed.
  bool handlerBlocksSegv_ = false;
  std::map<uint64_t, Stretch> known_;  // by the segment of their mark
};

}  // namespace rwd
