// Patching rdtsc (docs/syscall-buffer.md). With PR_TSC_SIGSEGV every rdtsc traps into the
// recorder, a ptrace round trip each. At the first trap of an rdtsc found in one of a few common
// patterns (with the instruction before or after it, five bytes or more together, no branch seen
// into their middle), the recorder replaces those bytes with a jump to a stub in a page it maps
// near them. The stub calls the preload library's TSC hook, which reads the TSC without a stop
// and keeps the value in the thread's syscall buffer, and runs the instruction the jump displaced.
// The patch is an event of its own: replay makes the same one at the same trap.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include "core/events.h"
#include "core/remote_syscalls.h"
#include "core/task.h"

namespace rwd {

// The TSC a recorded program reads, trapped or patched (rwd_control): CLOCK_MONOTONIC_RAW at the
// TSC's rate, measured once, from a real reading of it. One clock for both, so the program never
// sees it go back from one to the other.
class TscClock {
 public:
  TscClock();
  uint64_t now();
  // For the library: tsc_base, ns_base and tsc_per_ns.
  void params(uint64_t out[3]);

 private:
  void calibrate();
  uint64_t tsc0_ = 0, ns0_ = 0, perNs_ = 0;  // perNs_: TSC ticks a nanosecond, 32.32
};

class RdtscPatcher {
 public:
  // `task`, of process `tgid`, trapped on the rdtsc at its instruction pointer. `hook`: the TSC
  // hook of its process's preload library; `others`: the process's other threads in user code
  // (stopped: the task holds the run token). The patch made (the task set to resume in the
  // patched code), or nothing: the rdtsc keeps trapping. `taker` takes the signals that come
  // while a page for the patch is mapped.
  std::optional<PatchEvent> patch(Task& task, pid_t tgid, uint64_t hook,
                                  const std::vector<pid_t>& others,
                                  const RemoteSyscalls::SignalTaker& taker);

  void onFork(pid_t parent, pid_t child);  // a new process: its memory holds the same patches
  void forget(pid_t tgid);                 // its exec or its end

 private:
  struct StubPage {
    uint64_t addr;
    uint32_t used;
  };
  struct Space {
    std::vector<StubPage> pages;
    std::set<uint64_t> refused;  // sites that cannot be patched: not looked at again
  };
  std::map<pid_t, Space> spaces_;
};

}  // namespace rwd
