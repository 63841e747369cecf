// Seccomp filters the recorded program installs. The kernel runs them when recorded, as it would
// natively; the recorder keeps a copy of each and evaluates it as each syscall enters, to know
// which syscalls the filter stopped (with an errno, ENOSYS or SIGSYS) or turned into a kill:
// replay, which installs no filter, does not run those (their results, SIGSYS and deaths are
// in the recording).
//
// A filter also sees the syscalls rewind makes in the process (injected at exec, or a program's
// syscall the recorder cancels): those claim to come from kRewindSyscallIp, and the recorder
// puts a rule in front of each filter the program installs that lets that address through.
#pragma once

#include <linux/filter.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/events.h"
#include "core/task.h"

namespace rwd {

using BpfProgram = std::vector<sock_filter>;

// The filters in force for a task, newest last: inherited by its children and threads, kept
// across exec.
class SeccompFilters {
 public:
  bool empty() const { return programs_.empty(); }
  void add(std::shared_ptr<const BpfProgram> program) { programs_.push_back(std::move(program)); }
  // What the filters do with the syscall whose entry registers are `entry`, as the kernel
  // decides it: every filter runs, the action that comes first in the kernel's precedence wins.
  SyscallEvent::Filtered classify(const Regs& entry) const;

 private:
  std::vector<std::shared_ptr<const BpfProgram>> programs_;
};

// seccomp(SECCOMP_SET_MODE_FILTER) or prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER), from its entry
// stop to its exit stop.
class FilterInstall {
 public:
  // At the entry stop: nothing when the syscall installs no filter, or names one the kernel
  // will refuse by itself (it cannot be read). Otherwise writes the program's filter with
  // rewind's rule in front below the stack's red zone and points the syscall at it. Throws
  // Unsupported for what rewind cannot record: strict mode (which lets no syscall of rewind's
  // through), a user-notification listener (another process would answer the syscalls).
  static std::optional<FilterInstall> begin(Task& task, const Regs& entry);
  // At the exit stop: puts the memory and registers back; the program's filter if installed.
  std::shared_ptr<const BpfProgram> finish(Task& task, int64_t result);
  // SECCOMP_FILTER_FLAG_TSYNC: every thread of the process gets the caller's filters.
  bool tsync() const { return tsync_; }

 private:
  std::shared_ptr<const BpfProgram> program_;
  uint64_t argument_ = 0;  // the program's pointer to its filter
  uint64_t scratch_ = 0;
  std::vector<uint8_t> saved_;  // the stack bytes the copy covers
  bool tsync_ = false;
};

}  // namespace rwd
