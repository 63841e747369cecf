// A trapped rdtsc raises a SIGSEGV that the kernel forces: if the program blocked SIGSEGV, the
// kernel unblocks it and resets its action to the default (reblockForcedSigsegv in core/task.h
// blocks it again). The action is gone by the trap, so record and replay keep the one the
// program's last rt_sigaction(SIGSEGV) set, and set it again after the trap: a later fault then
// reaches the program's handler, as natively. (Replay forces the SIGSYS of a filter's
// SECCOMP_RET_TRAP with the same helper.)
#pragma once

#include <signal.h>

#include <cstdint>

#include "core/remote_syscalls.h"

namespace rwd {

// The kernel's struct sigaction, as rt_sigaction reads and writes it.
struct KernelSigaction {
  uint64_t handler = 0, flags = 0, restorer = 0, mask = 0;
};

constexpr uint64_t kSigsegvBit = uint64_t(1) << (SIGSEGV - 1);

// Sets the task's action for `sig` through an injected rt_sigaction that uses 32 bytes at
// `scratch` (restored after).
void setSignalAction(RemoteSyscalls& remote, uint64_t scratch, int sig,
                     const KernelSigaction& action);

}  // namespace rwd
