#include "replay/checkpoint.h"

#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>

#include "core/error.h"
#include "core/remote_syscalls.h"

namespace rwd {

pid_t forkProcess(Task& task, uint64_t gadget) {
  const Regs saved = task.regs();
  long child;
  {
    RemoteSyscalls remote(task, gadget);
    child = remote.check("forking a checkpoint", SYS_clone, CLONE_PARENT | SIGCHLD);
  }
  Task copy{pid_t(child)};
  Stop first = copy.wait();  // the SIGSTOP a traced child starts with
  if (first.kind != Stop::Signal) fail(ErrorCode::System, "checkpoint: the copy did not start");
  copy.setRegs(saved);
  return pid_t(child);
}

}  // namespace rwd
