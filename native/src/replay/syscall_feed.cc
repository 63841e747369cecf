#include "replay/syscall_feed.h"

#include <errno.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "core/syscall_restart.h"
#include "core/syscall_table.h"
#include "core/syscall_trampoline.h"

namespace rwd {

bool SyscallFeed::feedable(const Event& e, uint32_t tid) {
  if (e.type != EventType::Syscall || e.syscall.tid != tid) return false;
  const SyscallEvent& s = e.syscall;
  const SyscallSpec* spec = lookupSyscall(s.nr);
  // What replay does with such an event is writing its output and setting its result, nothing
  // else (ReplaySession::onSyscall): no file, child, echo or signal to follow.
  return spec && spec->buffered && spec->replay == ReplayAction::Emulate &&
         spec->sent == Sent::None && s.filtered == SyscallEvent::Filtered::No && !s.child &&
         !s.file && !s.echoFd && s.blob.empty() && s.fileWrites.empty() && s.writes.size() <= 1 &&
         s.result != -EINTR && !isRestartCode(s.result);
}

size_t SyscallFeed::fill(Task& task, const Event& first, uint64_t firstIndex, EventReader& reader) {
  const uint32_t tid = first.syscall.tid;
  if (!feedable(first, tid)) return 0;
  std::vector<uint8_t> image(sizeof(FeedHeader));
  auto add = [&](const SyscallEvent& s) {
    const std::vector<uint8_t> none;
    const std::vector<uint8_t>& out = s.writes.empty() ? none : s.writes[0].data;
    const size_t padded = (out.size() + 7) & ~size_t(7);
    if (image.size() + sizeof(FeedRecord) + padded > kFeedSize) return false;
    FeedRecord r{s.nr,
                 {s.args[0], s.args[1], s.args[2], s.args[3]},
                 s.result,
                 out.empty() ? 0 : s.writes[0].addr,
                 out.size()};
    const auto* p = reinterpret_cast<const uint8_t*>(&r);
    image.insert(image.end(), p, p + sizeof r);
    image.insert(image.end(), out.begin(), out.end());
    image.resize(image.size() + padded - out.size());
    return true;
  };
  if (!add(first.syscall)) return 0;
  events_ = {first};
  indices_ = {firstIndex};
  after_ = {reader.mark()};
  size_t candidates = 1;
  bool stops = false;  // the last event read is a syscall of the task's that no record answers
  for (;;) {
    Event e;
    const uint64_t index = reader.position();
    if (!reader.next(e)) break;
    events_.push_back(std::move(e));
    indices_.push_back(index);
    after_.push_back(reader.mark());
    const Event& got = events_.back();
    if (candidates < limit_ && feedable(got, tid) && add(got.syscall)) {
      candidates++;
      continue;
    }
    stops = got.type == EventType::Syscall && got.syscall.tid == tid;
    break;
  }
  fed_ = stops ? candidates : candidates - 1;
  if (!fed_) {
    reader.rewind(after_[0]);
    clear();
    return 0;
  }
  FeedHeader h{fed_, kFeed + sizeof(FeedHeader), {0, 0}};
  memcpy(image.data(), &h, sizeof h);
  task.write(kFeed, image.data(), image.size());
  return fed_;
}

std::optional<SyscallFeed::Taken> SyscallFeed::take(Task& task, EventReader& reader) {
  uint64_t left = 0;
  const uint64_t none = 0;
  const bool read = task.tryRead(kFeed + offsetof(FeedHeader, left), &left, sizeof left);
  if (read) task.write(kFeed + offsetof(FeedHeader, left), &none, sizeof none);
  if (!read || left > fed_) {
    clear();
    return std::nullopt;
  }
  const size_t k = fed_ - left;
  limit_ = k == fed_ ? std::min(2 * limit_, kFeedSize / sizeof(FeedRecord))
                     : std::max(kFirstLimit, 2 * k);
  reader.rewind(after_[k]);
  Taken t{std::move(events_[k]), indices_[k]};
  clear();
  return t;
}

void SyscallFeed::clear() {
  events_.clear();
  indices_.clear();
  after_.clear();
  fed_ = 0;
}

}  // namespace rwd
