#include "core/kick.h"

#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>

namespace rwd {
namespace kick {
namespace {
std::atomic<bool> pending{false};
}  // namespace

void send(pid_t tid) {
  if (pending.exchange(true)) return;
  syscall(SYS_tkill, tid, SIGSTOP);
}

bool take() { return pending.exchange(false); }

bool outstanding() { return pending; }

}  // namespace kick
}  // namespace rwd
