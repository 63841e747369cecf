// What the kernel does to a dying thread's robust mutexes (its exit_robust_list): each lock on
// the thread's robust list that it still owns is marked FUTEX_OWNER_DIED, so that the next
// locker gets EOWNERDEAD. Replay cannot leave that to its kernel: its threads have other tids
// than the recorded ones, and set_robust_list is emulated. So replay does it, with the recorded
// tid, where the recorded thread died or exec'd.
#pragma once

#include <cstdint>

#include "core/task.h"

namespace rwd {

// `head`: the address the thread gave set_robust_list (0: none). `tid`: its recorded tid.
void releaseRobustFutexes(Task& task, uint64_t head, uint32_t tid);

}  // namespace rwd
