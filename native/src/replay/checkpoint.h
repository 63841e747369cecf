// Copies of a replayed process, taken with fork: a stopped copy is a checkpoint, and a copy of
// the copy takes replay back to that point. fork copies only the calling thread, so the other
// threads of a process are kept as images and made again in each copy, as rr does.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "core/task.h"

namespace rwd {

// Forks the stopped task's process through the syscall instruction at `gadget`. The copy is a
// child of the tracer (CLONE_PARENT), so the tracer reaps it; it comes back stopped, traced,
// with the task's registers, and no other thread.
pid_t forkProcess(Task& task, uint64_t gadget);

// A stopped thread as a copy of its process needs it: registers, the extended (x87, SSE, AVX)
// state, the signal mask, and where the kernel clears its tid when it exits.
struct ThreadImage {
  Regs regs{};
  std::vector<uint8_t> xstate;
  uint64_t sigmask = 0;
  uint64_t clearChildTid = 0;
};

ThreadImage captureThread(const Task& thread, uint64_t clearChildTid);

// Makes a thread like `image` in the process of `task` (stopped, at a stop where syscalls can be
// injected) and returns its tid; it comes back stopped and traced.
pid_t recreateThread(Task& task, uint64_t gadget, const ThreadImage& image);

// A stopped process kept for later: a fork of it (of its leader thread only) and images of its
// other threads, by the tids they had when recorded.
struct ProcessCopy {
  uint32_t tgid = 0;    // as recorded
  uint64_t gadget = 0;  // a syscall instruction in it
  std::unique_ptr<Task> leader;
  std::vector<std::pair<uint32_t, ThreadImage>> threads;
};

}  // namespace rwd
