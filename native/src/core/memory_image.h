// A copy of the memory a process can write, taken where replay must find a position again.
// Without a branch counter, a loop whose changing state lives only in memory comes back to
// the same instruction with the same registers and stack at every pass; the words that the
// loop itself changes from one pass to the next tell the passes apart.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <vector>

#include "core/events.h"

namespace rwd {

class MemoryImage {
 public:
  // Every writable page of the process (the stub's range aside) that is not all zero. The stack
  // below each thread's red zone is dead, and replay's position trampolines write there: it
  // reads as zero.
  // `through`: a live thread of the process, whose /proc files reach its memory (the first
  // thread's do not once it has exited).
  static MemoryImage capture(pid_t tgid, pid_t through);

  // The aligned 8-byte words whose value differs in `later`, lowest address first, at most `max`.
  // None from the dead stack of either image: its zeros say nothing of what is there.
  std::vector<MemoryWord> changedWords(const MemoryImage& later, size_t max) const;

 private:
  bool dead(uint64_t addr) const;
  std::map<uint64_t, std::vector<uint8_t>> pages_;   // page address -> its 4096 bytes
  std::vector<std::pair<uint64_t, uint64_t>> dead_;  // [from, to): read as zero
};

// The user stack pointer of a thread that is stopped or blocked in the kernel.
uint64_t stoppedStackPointer(pid_t tid);

}  // namespace rwd
