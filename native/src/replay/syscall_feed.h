// The records a task's replay trampoline answers without a stop (core/syscall_trampoline.h): the
// buffered syscalls that come next in the stream, all the task's own, written into its feed
// before it runs and taken back at its next stop, whatever that stop is. Only a plain replay
// feeds (docs/syscall-buffer.md, "Replay"): a debugger's stops and positions see every syscall.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "core/event_stream.h"
#include "core/task.h"

namespace rwd {

class SyscallFeed {
 public:
  // Whether the trampoline may answer the event's syscall for task `tid`: one the library
  // buffers, whose whole effect is its result and at most one output.
  static bool feedable(const Event& e, uint32_t tid);

  // `first` is the task's next event, at index `firstIndex`; `reader` is past it. Writes the
  // events the task may take without a stop into its feed and returns how many (0: none; the
  // reader is where it was). The last one it writes is followed by a syscall of the task's own,
  // so the task always stops before anything else the stream holds for it (a position, a
  // signal): were the last event of such a run fed, the task could run past its next position.
  size_t fill(Task& task, const Event& first, uint64_t firstIndex, EventReader& reader);
  bool active() const { return fed_ > 0; }

  struct Taken {
    Event next;      // the task's next event, past the records it took (events applied)
    uint64_t index;  // its index in the stream
  };
  // At the task's stop: moves the reader past the events taken and empties the feed.
  // nullopt: the task is gone, or its feed says what the trampoline cannot have written.
  std::optional<Taken> take(Task& task, EventReader& reader);

 private:
  void clear();

  std::vector<Event> events_;      // the task's next event, then those read after it
  std::vector<uint64_t> indices_;  // of each
  std::vector<ReaderMark> after_;  // the reader past each
  // How many records the next fill writes at most: twice what the task took last time when it
  // stopped short of the end (a syscall of its own that the library does not buffer, in every
  // pass of a loop), so that a feed does not cost more than the stops it saves.
  static constexpr size_t kFirstLimit = 8;
  size_t limit_ = kFirstLimit;
  size_t fed_ = 0;
};

}  // namespace rwd
