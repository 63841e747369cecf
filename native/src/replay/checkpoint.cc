#include "replay/checkpoint.h"

#include <elf.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/remote_syscalls.h"

namespace rwd {
namespace {

// Waits for the SIGSTOP a new traced task starts with.
void awaitStart(Task& t, const char* what) {
  Stop first = t.wait();
  if (first.kind != Stop::Signal) fail(ErrorCode::System, std::string(what) + " did not start");
}

struct ForkAdvice {
  uint64_t start, end;
  int advice;  // MADV_DONTFORK or MADV_WIPEONFORK
};

// The mappings the kernel keeps out of forks or wipes in them: "dc" and "wf" in their VmFlags.
std::vector<ForkAdvice> forkAdviceOf(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps");
  std::vector<ForkAdvice> out;
  std::string line;
  uint64_t start = 0, end = 0;
  while (std::getline(in, line)) {
    uint64_t from, to;
    if (sscanf(line.c_str(), "%" SCNx64 "-%" SCNx64 " ", &from, &to) == 2) {
      start = from;
      end = to;
      continue;
    }
    if (line.rfind("VmFlags:", 0) != 0) continue;
    std::istringstream flags(line.substr(8));
    std::string flag;
    while (flags >> flag) {
      if (flag == "dc") out.push_back(ForkAdvice{start, end, MADV_DONTFORK});
      if (flag == "wf") out.push_back(ForkAdvice{start, end, MADV_WIPEONFORK});
    }
  }
  return out;
}

}  // namespace

pid_t forkProcess(Task& task, uint64_t gadget) {
  const Regs saved = task.regs();
  // A copy has all of the memory as it is: what the program keeps out of its forks, or has
  // them wipe, is given to this fork, and kept out of the program's own forks again in both.
  const std::vector<ForkAdvice> advice = forkAdviceOf(task.tid());
  auto advise = [&](RemoteSyscalls& remote, bool lift) {
    for (const ForkAdvice& a : advice) {
      int what = lift ? (a.advice == MADV_DONTFORK ? MADV_DOFORK : MADV_KEEPONFORK) : a.advice;
      remote.check("advising a checkpoint's memory", SYS_madvise, a.start, a.end - a.start,
                   uint64_t(what));
    }
  };
  long child;
  {
    RemoteSyscalls remote(task, gadget);
    advise(remote, true);
    child = remote.check("forking a checkpoint", SYS_clone, CLONE_PARENT | SIGCHLD);
    advise(remote, false);
  }
  Task copy{pid_t(child)};
  awaitStart(copy, "checkpoint: the copy");
  if (!advice.empty()) {
    RemoteSyscalls remote(copy, gadget);
    advise(remote, false);
  }
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
