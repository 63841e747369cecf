// How the kernel ends a syscall that a signal interrupted. It returns one of these codes
// internally, never to the program: as it delivers the signal, a handler turns it into -EINTR
// (or restarts the syscall, with SA_RESTART); with no handler to run, the task goes back to its
// syscall instruction and makes the syscall again, or restart_syscall.
#pragma once

#include <sys/syscall.h>

#include <cstdint>

#include "core/task.h"

namespace rwd {

constexpr int64_t kErestartSys = -512;           // ERESTARTSYS: EINTR only without SA_RESTART
constexpr int64_t kErestartNoIntr = -513;        // ERESTARTNOINTR: always restarted
constexpr int64_t kErestartNoHand = -514;        // ERESTARTNOHAND: EINTR with any handler
constexpr int64_t kErestartRestartBlock = -516;  // ERESTART_RESTARTBLOCK: restart_syscall

inline bool isRestartCode(int64_t result) {
  return result == kErestartSys || result == kErestartNoIntr || result == kErestartNoHand ||
         result == kErestartRestartBlock;
}

// The registers the kernel gives a task whose syscall returned `result` (a restart code) when no
// handler runs: back at the syscall instruction, with the same syscall or restart_syscall.
inline Regs restartedRegs(Regs exit, int64_t result) {
  exit.rip -= 2;  // syscall is 2 bytes long
  exit.rax = result == kErestartRestartBlock ? uint64_t(SYS_restart_syscall) : exit.orig_rax;
  return exit;
}

}  // namespace rwd
