#include "replay/checkpoint.h"

#include <sched.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>

#include "core/error.h"

namespace rwd {

pid_t forkProcess(Task& task, uint64_t gadget) {
  const Regs saved = task.regs();
  Regs r = saved;
  r.rip = gadget;
  r.rax = r.orig_rax = SYS_clone;
  r.rdi = CLONE_PARENT | SIGCHLD;
  r.rsi = r.rdx = r.r10 = r.r8 = 0;
  task.setRegs(r);
  // As in RemoteSyscalls: a PTRACE_SYSEMU stop first reports the exit of the skipped syscall.
  for (;;) {
    task.resume(PTRACE_SYSCALL);
    Stop s = task.wait();
    if (s.kind != Stop::SyscallStop) fail(ErrorCode::System, "checkpoint: fork did not start");
    if (task.regs().rip == gadget + 2) break;
  }
  task.resume(PTRACE_SYSCALL);
  Stop s = task.wait();
  if (s.kind != Stop::Event) fail(ErrorCode::System, "checkpoint: fork failed");
  unsigned long child = 0;
  ptrace(PTRACE_GETEVENTMSG, task.tid(), nullptr, &child);
  task.resume(PTRACE_SYSCALL);
  if (task.wait().kind != Stop::SyscallStop)
    fail(ErrorCode::System, "checkpoint: fork did not end");
  task.setRegs(saved);

  Task copy{pid_t(child)};
  Stop first = copy.wait();  // the SIGSTOP a traced child starts with
  if (first.kind != Stop::Signal) fail(ErrorCode::System, "checkpoint: the copy did not start");
  copy.setRegs(saved);
  return pid_t(child);
}

}  // namespace rwd
