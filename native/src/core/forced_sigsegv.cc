#include "core/forced_sigsegv.h"

#include <sys/syscall.h>

namespace rwd {
namespace {

constexpr uint64_t kSigsetSize = 8;

// Runs rt_sigaction(sig, act, oldact) with the struct at `scratch`, whose bytes are put back.
long sigaction(RemoteSyscalls& remote, uint64_t scratch, int sig, KernelSigaction* action,
               bool set) {
  Task& task = remote.task();
  KernelSigaction saved;
  if (!task.tryRead(scratch, &saved, sizeof saved)) return -EFAULT;
  if (set) task.write(scratch, action, sizeof *action);
  long r = remote.call(SYS_rt_sigaction, uint64_t(sig), set ? scratch : 0, set ? 0 : scratch,
                       kSigsetSize);
  if (r == 0 && !set) task.read(scratch, action, sizeof *action);
  task.write(scratch, &saved, sizeof saved);
  return r;
}

}  // namespace

std::optional<KernelSigaction> signalAction(RemoteSyscalls& remote, uint64_t scratch, int sig) {
  KernelSigaction action;
  if (sigaction(remote, scratch, sig, &action, false) != 0) return std::nullopt;
  return action;
}

void setSignalAction(RemoteSyscalls& remote, uint64_t scratch, int sig,
                     const KernelSigaction& action) {
  KernelSigaction copy = action;
  sigaction(remote, scratch, sig, &copy, true);
}

}  // namespace rwd
