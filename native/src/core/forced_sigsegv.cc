#include "core/forced_sigsegv.h"

#include <sys/syscall.h>

namespace rwd {

void setSignalAction(RemoteSyscalls& remote, uint64_t scratch, int sig,
                     const KernelSigaction& action) {
  constexpr uint64_t kSigsetSize = 8;
  Task& task = remote.task();
  KernelSigaction saved;
  if (!task.tryRead(scratch, &saved, sizeof saved)) return;
  task.write(scratch, &action, sizeof action);
  remote.call(SYS_rt_sigaction, uint64_t(sig), scratch, 0, kSigsetSize);
  task.write(scratch, &saved, sizeof saved);
}

}  // namespace rwd
