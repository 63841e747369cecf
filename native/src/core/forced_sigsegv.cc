#include "core/forced_sigsegv.h"

#include <sys/syscall.h>

namespace rwd {
namespace {

constexpr uint64_t kSigsetSize = 8;

// Runs rt_sigaction(SIGSEGV, act, oldact) with the struct at `scratch`, whose bytes are put back.
long sigaction(RemoteSyscalls& remote, uint64_t scratch, KernelSigaction* action, bool set) {
  Task& task = remote.task();
  KernelSigaction saved;
  if (!task.tryRead(scratch, &saved, sizeof saved)) return -EFAULT;
  if (set) task.write(scratch, action, sizeof *action);
  long r =
      remote.call(SYS_rt_sigaction, SIGSEGV, set ? scratch : 0, set ? 0 : scratch, kSigsetSize);
  if (r == 0 && !set) task.read(scratch, action, sizeof *action);
  task.write(scratch, &saved, sizeof saved);
  return r;
}

}  // namespace

std::optional<KernelSigaction> sigsegvAction(RemoteSyscalls& remote, uint64_t scratch) {
  KernelSigaction action;
  if (sigaction(remote, scratch, &action, false) != 0) return std::nullopt;
  return action;
}

void setSigsegvAction(RemoteSyscalls& remote, uint64_t scratch, const KernelSigaction& action) {
  KernelSigaction copy = action;
  sigaction(remote, scratch, &copy, true);
}

}  // namespace rwd
