#include "replay/checkpoint.h"

#include <elf.h>
#include <sched.h>
#include <signal.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#include "core/error.h"
#include "core/remote_syscalls.h"

namespace rwd {
namespace {

// Waits for the SIGSTOP a new traced task starts with.
void awaitStart(Task& t, const char* what) {
  Stop first = t.wait();
  if (first.kind != Stop::Signal) fail(ErrorCode::System, std::string(what) + " did not start");
}

}  // namespace

pid_t forkProcess(Task& task, uint64_t gadget) {
  const Regs saved = task.regs();
  long child;
  {
    RemoteSyscalls remote(task, gadget);
    child = remote.check("forking a checkpoint", SYS_clone, CLONE_PARENT | SIGCHLD);
  }
  Task copy{pid_t(child)};
  awaitStart(copy, "checkpoint: the copy");
  copy.setRegs(saved);
  return pid_t(child);
}

ThreadImage captureThread(const Task& thread, uint64_t clearChildTid) {
  ThreadImage image;
  image.regs = thread.regs();
  image.clearChildTid = clearChildTid;
  image.xstate.resize(16384);  // more than any XSAVE area; the kernel says how much it used
  iovec io{image.xstate.data(), image.xstate.size()};
  if (ptrace(PTRACE_GETREGSET, thread.tid(), NT_X86_XSTATE, &io) < 0) {
    failErrno("reading a thread's extended state");
  }
  image.xstate.resize(io.iov_len);
  if (ptrace(PTRACE_GETSIGMASK, thread.tid(), sizeof image.sigmask, &image.sigmask) < 0) {
    failErrno("reading a thread's signal mask");
  }
  return image;
}

pid_t recreateThread(Task& task, uint64_t gadget, const ThreadImage& image) {
  uint64_t flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD |
                   CLONE_SYSVSEM | (image.clearChildTid ? CLONE_CHILD_CLEARTID : 0);
  long tid;
  {
    RemoteSyscalls remote(task, gadget);
    // No stack of its own: it runs nothing before it gets the image's registers.
    tid = remote.check("making a thread of a checkpoint", SYS_clone, flags, 0, 0,
                       image.clearChildTid, 0);
  }
  Task thread{pid_t(tid)};
  awaitStart(thread, "checkpoint: a thread");
  thread.setRegs(image.regs);
  iovec io{const_cast<uint8_t*>(image.xstate.data()), image.xstate.size()};
  if (ptrace(PTRACE_SETREGSET, tid, NT_X86_XSTATE, &io) < 0) {
    failErrno("writing a thread's extended state");
  }
  uint64_t mask = image.sigmask;
  if (ptrace(PTRACE_SETSIGMASK, tid, sizeof mask, &mask) < 0) {
    failErrno("writing a thread's signal mask");
  }
  return pid_t(tid);
}

}  // namespace rwd
