// An RAII guard that injects syscalls into a stopped task through a known syscall
// instruction (the "gadget") and restores the task's registers when it goes out of scope.
//
// The task must be at a stop where resuming does not run a syscall of its own: a
// syscall-exit stop, an exec stop, or a PTRACE_SYSEMU entry stop (whose syscall is skipped).
#pragma once

#include <signal.h>

#include <cstdint>
#include <functional>
#include <string>

#include "core/task.h"

namespace rwd {

class RemoteSyscalls {
 public:
  // A signal that comes meanwhile (a timer's, a child's SIGCHLD) is not for the injected
  // syscalls. A recorder, whose program must get it, takes it to send it again once the task
  // runs its own code (Later), or has it delivered at once if all it does is stop the process
  // (Now: the kernel decides whether it still does, a SIGCONT since having undone it), or
  // cannot let it wait (Refused: a fault; the injection fails). Without a taker (a replay, whose
  // SIGCHLDs are its own doing, the recording's being events of their own) a child's end is
  // dropped, and any other signal fails the injection.
  enum class Fate { Later, Now, Refused };
  using SignalTaker = std::function<Fate(const siginfo_t&)>;

  RemoteSyscalls(Task& task, uint64_t gadget, SignalTaker taker = nullptr);
  ~RemoteSyscalls();
  RemoteSyscalls(const RemoteSyscalls&) = delete;
  RemoteSyscalls& operator=(const RemoteSyscalls&) = delete;

  // Runs one syscall in the task and returns its raw result (-errno on failure).
  long call(long nr, uint64_t a0 = 0, uint64_t a1 = 0, uint64_t a2 = 0, uint64_t a3 = 0,
            uint64_t a4 = 0, uint64_t a5 = 0);
  // Like call(), but a failure throws a System error naming `what`.
  long check(const char* what, long nr, uint64_t a0 = 0, uint64_t a1 = 0, uint64_t a2 = 0,
             uint64_t a3 = 0, uint64_t a4 = 0, uint64_t a5 = 0);

  // The injected syscalls claim to come from `ip`, which is what seccomp filters see of them
  // (record/seccomp_filter.h).
  void claimOrigin(uint64_t ip) { origin_ = ip; }

  const Regs& savedRegs() const { return saved_; }
  Task& task() { return task_; }

 private:
  Task& task_;
  Regs saved_;
  uint64_t gadget_;
  SignalTaker taker_;
  uint64_t origin_ = 0;
  bool stopLater_ = false;  // a SIGSTOP came meanwhile
  // A stop of the seized kind came meanwhile (its process's group-stop, or the kernel telling it
  // its process was continued): the kernel reports it again where the task resumes.
  bool trapLater_ = false;
  bool seccompStops_;  // the task's, off meanwhile: an injected syscall stops at its entry
};

}  // namespace rwd
