// The recorder's side of the syscall buffer (docs/syscall-buffer.md). The preload library makes
// frequent syscalls that cannot block from the trampoline page, which the recorder's seccomp
// filter lets through without a stop, and keeps a record of each in a buffer of its thread. The
// recorder turns the records into ordinary syscall events before it writes any other event, so
// the stream has every syscall in the order the tasks made them, and replay meets and checks
// each one as if it had been traced.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/events.h"
#include "core/remote_syscalls.h"
#include "core/task.h"
#include "record/rdtsc_patch.h"

namespace rwd {

// The program's environment with the library preloaded (in front of any the program preloads).
std::vector<std::string> withPreload(std::vector<std::string> env, const std::string& library);

class SyscallBuffers {
 public:
  // At a task's exec stop (after the address space was captured): maps the trampoline; at the
  // first exec also installs the filter (inherited by every task the program starts) and asks
  // the kernel for its stops. False when the kernel refused the filter: nothing is buffered.
  bool onExec(RemoteSyscalls& remote, bool first);

  // RWD_SYS_BUFFER_INIT and RWD_SYS_BUFFER_FLUSH, made by `task` with the entry registers
  // `entry`, at their exit: the result the library gets (1: the thread buffers). `allowed`:
  // the task's syscalls stop through the filter (so the trampoline's pass without a stop).
  // The library's clock for patched rdtsc instructions is `tsc`'s.
  int64_t request(Task& task, const Regs& entry, bool allowed, TscClock& tsc);
  // What the recorder wrote into the library's memory for the syscall whose event `s` is (the
  // emptied buffer, the control word of a process that installed a filter of its own): in the
  // event, so replay writes the same.
  void addWrites(pid_t tid, SyscallEvent& s);
  // A thread of `task`'s process (its threads: `threads`) installed a seccomp filter of its
  // own: the library stops buffering (its `enabled` word cleared), and none of those threads,
  // nor any they create, sets up a buffer after (which would set the word again).
  void disable(Task& task, const std::vector<pid_t>& threads);

  void onFork(pid_t parent, pid_t child, bool thread, bool vfork);
  void forget(pid_t tid);  // its exec or its end

  // The TSC hook of the library of the process whose threads are `threads`, 0 if none of them
  // buffers (or the library stopped buffering).
  uint64_t tscHook(const std::vector<pid_t>& threads) const;

  // Whether the task (at `rip`) is between a buffered syscall and its record's commit, where no
  // position may be named (the syscall ran, its event is not in the stream yet), or in the TSC
  // hook's code, which replay runs another way.
  bool inCall(pid_t tid, uint64_t rip) const;
  // Hands `take` the records no event holds yet, of every buffer, as syscall and tsc events, in
  // the order each thread made them.
  void drain(const std::function<void(const Event&)>& take);

 private:
  struct Buffer {
    pid_t owner = 0;   // whose memory it is read from
    pid_t writer = 0;  // the task that makes its syscalls
    uint64_t addr = 0;
    uint32_t size = 0;
    uint32_t taken = 0;  // bytes of it already in events
    uint64_t control = 0;
    uint64_t tscCode[2] = {};  // the library's TSC hook code (rwd_control)
    int memFd = -1;
    ~Buffer();
  };
  bool readHeader(const Buffer& b, uint32_t* used, uint32_t* inCall) const;
  std::shared_ptr<Buffer> open(pid_t tid, uint64_t addr, uint64_t control);

  std::map<pid_t, std::shared_ptr<Buffer>> byTask_;
  std::map<pid_t, std::vector<MemoryWrite>> pendingWrites_;
  std::set<pid_t> refused_;       // tasks of processes that stopped buffering (disable)
  std::vector<uint8_t> scratch_;  // drain's copy of a buffer, kept: it is up to 1 MiB each time
};

}  // namespace rwd
