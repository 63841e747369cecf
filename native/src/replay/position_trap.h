// Reaching a recorded position in user code fast. Without a branch counter, a position is the
// first time the task's registers, stack and the position's words of memory are the recorded
// ones at the recorded instruction. A breakpoint there costs a ptrace stop at every pass (every
// iteration of a loop). Instead the instruction is replaced by a jump to a trampoline that
// compares the registers and the words in the process itself and traps only when they all
// match; otherwise it runs a copy of the instruction and jumps back.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/events.h"
#include "core/task.h"
#include "replay/address_space_builder.h"

namespace rwd {

// Pages of trampolines in one address space, kept for reuse (each must lie within a jump's
// reach of the instruction it serves).
struct TrampolinePages {
  std::vector<uint64_t> pages;
};

// Whether a task with registers `r` is at position `p`: the same registers, stack and words.
bool atPosition(const Task& task, const Regs& r, const PreemptEvent& p);

class PositionTrap {
 public:
  // Returns nullptr when the instruction at target.rip cannot be moved (too short, relative to
  // rip, a jump) or no page is within reach; the caller falls back to a breakpoint.
  // The task must be at a stop where syscalls can be injected.
  static std::unique_ptr<PositionTrap> install(Task& task, const StubLayout& stub,
                                               TrampolinePages& pages, const PreemptEvent& target);
  ~PositionTrap();  // puts the instruction back
  PositionTrap(const PositionTrap&) = delete;
  PositionTrap& operator=(const PositionTrap&) = delete;

  // Whether a SIGTRAP stop at `rip` is the trampoline finding the registers and words it waits
  // for.
  bool matched(uint64_t rip) const { return rip == matchTrap_ + 1; }
  // Where to send the task when the registers matched but the position did not (its stack).
  uint64_t goOn() const { return copy_; }

 private:
  PositionTrap(Task& task, uint64_t at, std::vector<uint8_t> original)
      : task_(task), at_(at), original_(std::move(original)) {}
  Task& task_;
  uint64_t at_;
  std::vector<uint8_t> original_;
  uint64_t matchTrap_ = 0;
  uint64_t copy_ = 0;
};

}  // namespace rwd
