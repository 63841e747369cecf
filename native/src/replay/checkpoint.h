// Copies of a replayed process, taken with fork: a stopped copy is a checkpoint, and a copy of
// the copy takes replay back to that point.
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "core/task.h"

namespace rwd {

// Forks the stopped task's process through the syscall instruction at `gadget`. The copy is a
// child of the tracer (CLONE_PARENT), so the tracer reaps it; it comes back stopped, traced,
// with the task's registers. Single-threaded processes only: fork copies the calling thread.
pid_t forkProcess(Task& task, uint64_t gadget);

}  // namespace rwd
