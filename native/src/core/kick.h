// Interrupting a task that runs its own code, from another thread: a SIGSTOP, counted as ours, so
// that whoever meets the stop (the run it interrupts, or a syscall injected meanwhile) can tell it
// from one the program sent. At most one is outstanding at a time.
#pragma once

#include <sys/types.h>

namespace rwd {
namespace kick {

// Sends the task a SIGSTOP, unless one is outstanding already.
void send(pid_t tid);
// At a SIGSTOP stop: whether it was ours (it is then taken).
bool take();
bool outstanding();

}  // namespace kick
}  // namespace rwd
