#include "core/remote_syscalls.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
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
  // Its next resume traps before any code of its own runs: in its process's stop if that is still
  // in force, else as continued (PTRACE_EVENT_STOP with SIGTRAP), which the recorder handles as
  // it would have then.
  if (trapLater_) ptrace(PTRACE_INTERRUPT, task_.tid(), nullptr, nullptr);
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
  int deliver = 0;
  for (;;) {
    task_.resume(PTRACE_SYSCALL, deliver);
    deliver = 0;
    Stop s = task_.wait();
    // A debugger's SIGSTOP that was meant to interrupt the task's own code: not for this.
    if (s.kind == Stop::Signal && s.sig == SIGSTOP && kick::take()) continue;
    if (s.kind == Stop::Event && s.event == PTRACE_EVENT_STOP) {
      trapLater_ = true;
      continue;
    }
    if (s.kind == Stop::Signal) {
      const siginfo_t info = task_.siginfo();
      // Another SIGSTOP (a tracer's attach, the recorder's preemption, which the recorder sent
      // itself): for the task's own code, sent again once the injection is over.
      if (s.sig == SIGSTOP && (!taker_ || (info.si_code == SI_TKILL && info.si_pid == getpid()))) {
        stopLater_ = true;
        continue;
      }
      const Fate fate = taker_ ? taker_(info) : Fate::Refused;
      if (fate == Fate::Later) continue;
      if (fate == Fate::Now) {
        deliver = s.sig;  // its group-stop, if any, is one of the stops above
        continue;
      }
    }
    if (!taker_ && isChildEnd(task_, s)) continue;
    if (s.kind != Stop::SyscallStop) {
      char status[16];
      snprintf(status, sizeof status, "%#x", s.status);
      fail(ErrorCode::System, std::string("task stopped unexpectedly while injecting ") +
                                  syscallName(nr) + " (wait status " + status + ")");
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
    if (s.kind == Stop::Event && s.event == PTRACE_EVENT_STOP) trapLater_ = true;
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
