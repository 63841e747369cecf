#include "replay/robust_futexes.h"

#include <linux/futex.h>

namespace rwd {
namespace {

constexpr int kListLimit = 2048;  // the kernel's ROBUST_LIST_LIMIT: it stops walking there

// struct robust_list_head.
struct ListHead {
  uint64_t next;
  int64_t futexOffset;
  uint64_t pending;  // the lock being taken or released when the thread died
};

// Bit 0 of a list pointer says the lock is a priority-inheritance one.
uint64_t entryOf(uint64_t pointer) { return pointer & ~uint64_t(1); }
bool isPi(uint64_t pointer) { return pointer & 1; }

// The kernel's handle_futex_death, less the wake-ups (replay emulates futex waits). False where
// the kernel gives up on the list (a misaligned or unreadable lock word).
bool markOwnerDied(Task& task, uint64_t pointer, int64_t offset, uint32_t tid, bool pending) {
  uint64_t addr = entryOf(pointer) + uint64_t(offset);
  uint32_t word = 0;
  if (addr % sizeof word || !task.tryRead(addr, &word, sizeof word)) return false;
  if (pending && !isPi(pointer) && word == 0) return true;  // unlocked: the kernel only wakes
  if ((word & FUTEX_TID_MASK) != tid) return true;
  uint32_t marked = (word & FUTEX_WAITERS) | FUTEX_OWNER_DIED;
  return task.tryWrite(addr, &marked, sizeof marked);
}

}  // namespace

void releaseRobustFutexes(Task& task, uint64_t head, uint32_t tid) {
  ListHead h;
  if (!head || !task.tryRead(head, &h, sizeof h)) return;
  uint64_t pointer = h.next;
  for (int i = 0; entryOf(pointer) != head && i < kListLimit; i++) {
    uint64_t next = 0;
    bool haveNext = task.tryRead(entryOf(pointer), &next, sizeof next);
    if (entryOf(pointer) != entryOf(h.pending) &&
        !markOwnerDied(task, pointer, h.futexOffset, tid, false)) {
      return;
    }
    if (!haveNext) return;
    pointer = next;
  }
  if (entryOf(h.pending)) markOwnerDied(task, h.pending, h.futexOffset, tid, true);
}

}  // namespace rwd
