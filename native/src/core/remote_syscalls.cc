#include "core/remote_syscalls.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <utility>

#include "core/error.h"
#include "core/kick.h"
#include "core/syscall_table.h"

namespace rwd {

RemoteSyscalls::RemoteSyscalls(Task& task, uint64_t gadget, SignalTaker taker)
    : task_(task),
      saved_(task.regs()),
      gadget_(gadget),
      taker_(std::move(taker)),
      seccompStops_(task.seccompStops()) {
  task_.setSeccompStops(false);
}

RemoteSyscalls::~RemoteSyscalls() {
  task_.setSeccompStops(seccompStops_);
  try {
    // arch_prctl(ARCH_SET_FS) is among the injected syscalls: keep what it set.
    Regs now = task_.regs();
    saved_.fs_base = now.fs_base;
    saved_.gs_base = now.gs_base;
    task_.setRegs(saved_);
  } catch (const Error&) {
    // The task died under us; whoever waits for it next will see that.
  }
  if (stopLater_) syscall(SYS_tkill, task_.tid(), SIGSTOP);
}

long RemoteSyscalls::call(long nr, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4,
                          uint64_t a5) {
  Regs r = saved_;
  r.rip = gadget_;
  r.rax = nr;
  r.orig_rax = nr;
  r.rdi = a0;
  r.rsi = a1;
  r.rdx = a2;
  r.r10 = a3;
  r.r8 = a4;
  r.r9 = a5;
  task_.setRegs(r);
  // Resuming a PTRACE_SYSEMU stop with PTRACE_SYSCALL first reports an exit stop for the
  // skipped syscall (rip still at the gadget); the injected entry stop has rip past it.
  for (;;) {
    task_.resume(PTRACE_SYSCALL);
    Stop s = task_.wait();
    // A debugger's SIGSTOP that was meant to interrupt the task's own code: not for this.
    if (s.kind == Stop::Signal && s.sig == SIGSTOP && kick::take()) continue;
    // Another SIGSTOP (a tracer's attach, the recorder's preemption): for the task's own code,
    // sent again once the injection is over.
    if (s.kind == Stop::Signal && s.sig == SIGSTOP) {
      stopLater_ = true;
      continue;
    }
    if (s.kind == Stop::Signal && taker_ && taker_(task_.siginfo())) continue;
    if (!taker_ && isChildEnd(task_, s)) continue;
    if (s.kind != Stop::SyscallStop) {
      fail(ErrorCode::System,
           std::string("task stopped unexpectedly while injecting ") + syscallName(nr));
    }
    if (task_.regs().rip == gadget_ + 2) break;
  }
  if (origin_) {
    Regs entry = task_.regs();
    entry.rip = origin_;
    task_.setRegs(entry);
  }
  // A fork stops once more on the way, at its ptrace event. (Not past a kill's PTRACE_EVENT_EXIT:
  // the recorder's own handling of that stop comes next.)
  Stop s;
  do {
    task_.resume(PTRACE_SYSCALL);
    s = task_.wait();
  } while (s.kind == Stop::Event && s.event != PTRACE_EVENT_EXIT);
  if (s.kind != Stop::SyscallStop) {
    fail(ErrorCode::System, std::string("task did not finish injected syscall ") + syscallName(nr));
  }
  return static_cast<long>(task_.regs().rax);
}

long RemoteSyscalls::check(const char* what, long nr, uint64_t a0, uint64_t a1, uint64_t a2,
                           uint64_t a3, uint64_t a4, uint64_t a5) {
  long r = call(nr, a0, a1, a2, a3, a4, a5);
  if (r < 0 && r > -4096) {
    fail(ErrorCode::System, std::string(what) + " in the traced process failed: " + strerror(-r));
  }
  return r;
}

}  // namespace rwd
