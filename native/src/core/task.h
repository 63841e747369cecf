// A traced task (a thread of a traced process): registers, memory and ptrace stops.
#pragma once

#include <signal.h>
#include <sys/types.h>
#include <sys/user.h>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"

namespace rwd {

using Regs = user_regs_struct;

// What a waitpid() status says about a stopped or ended task.
struct Stop {
  enum Kind { SyscallStop, Signal, Event, Exited, Killed } kind;
  int sig = 0;     // Signal: the signal; Killed: the fatal signal
  int event = 0;   // Event: PTRACE_EVENT_*
  int status = 0;  // the raw wait status
  static Stop fromWaitStatus(int status);
};

// A ptrace request on a task that is no longer in a ptrace stop: it was killed meanwhile (a
// SIGKILL, another thread's exit_group or exec) and is on its way out; waitpid reports its end.
class TaskGone : public Error {
 public:
  explicit TaskGone(const std::string& message) : Error(ErrorCode::System, message) {}
};

class Task {
 public:
  explicit Task(pid_t tid);
  ~Task();
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;

  pid_t tid() const { return tid_; }

  Regs regs() const;
  void setRegs(const Regs& regs);
  siginfo_t siginfo() const;
  void setSiginfo(const siginfo_t& info);
  // The signals queued for the task or its process, not yet delivered.
  std::set<int> pendingSignals() const;
  // Sends the task itself (this thread, not its process) a signal.
  void sendSignal(int sig);

  // Memory access through /proc/PID/mem, which also reaches pages the task cannot write.
  bool tryRead(uint64_t addr, void* buf, size_t len) const;
  void read(uint64_t addr, void* buf, size_t len) const;
  std::vector<uint8_t> readBytes(uint64_t addr, size_t len) const;
  std::string readCString(uint64_t addr, size_t max = 4096) const;
  void write(uint64_t addr, const void* buf, size_t len);
  bool tryWrite(uint64_t addr, const void* buf, size_t len);
  // The memory file belongs to one address space: call after every exec.
  void reopenMemory();

  // At a syscall-entry stop: whether the syscall came in through a 32-bit entry (int $0x80,
  // sysenter), whose numbers and arguments are the i386 ABI's.
  bool inCompatSyscall() const;
  // At a syscall stop: whether it is the entry (else the exit).
  bool atSyscallEntry() const;

  // With seccomp stops on, resume(PTRACE_SYSCALL) outside a syscall is PTRACE_CONT: the
  // recorder's seccomp filter stops the syscalls it must see (PTRACE_EVENT_SECCOMP, their entry)
  // and lets the syscall buffer's through (record/syscall_buffer.h). The recorder says when the
  // task is inside a syscall, where PTRACE_SYSCALL takes it to the exit stop.
  void setSeccompStops(bool on) { seccompStops_ = on; }
  bool seccompStops() const { return seccompStops_; }
  void setInSyscall(bool in) { inSyscall_ = in; }

  void resume(int request, int sig = 0);
  Stop wait();

  // Keep the registers read or set since the task last resumed, sparing a PTRACE_GETREGS per
  // read: only for a tracer whose every change to them goes through setRegs (replay; not the
  // recorder, whose emulated ptrace pokes a program's tracees directly).
  void keepRegs() { keepRegs_ = true; }

 private:
  pid_t tid_;
  bool keepRegs_ = false;
  mutable bool regsKnown_ = false;
  mutable Regs regs_{};
  int memFd_ = -1;
  bool seccompStops_ = false;
  bool inSyscall_ = false;
};

// Kills tasks and collects their ends. A thread-group leader reports its end only after its
// other threads, so they are reaped in whatever order the kernel allows (for up to 2 s).
void killAndReap(std::vector<pid_t> tids);

// The task's blocked signals (at a syscall stop: the program's own, not a syscall's temporary
// mask); 0 if it vanished.
uint64_t blockedSignals(const Task& task);
// The kernel unblocks the SIGSEGV it forces on a trapped rdtsc: blocks it again if `mask` (the
// task's blocked signals as its last syscall left them: only syscalls and signal delivery change
// them) had it, and it is all that changed.
void reblockForcedSigsegv(const Task& task, uint64_t mask);

// FNV-1a, 64 bits.
inline uint64_t fnv1a(const uint8_t* data, size_t len) {
  uint64_t h = 14695981039346656037ull;
  for (size_t i = 0; i < len; i++) h = (h ^ data[i]) * 1099511628211ull;
  return h;
}

// A hash of the 256 bytes at the top of a task's stack: with the registers, it names a position
// in user code that no syscall marks.
uint64_t stackHash(const Task& task, uint64_t rsp);
// Whether a stop is the kernel's SIGCHLD for a child that ended or stopped (not one a process
// sent).
bool isChildEnd(const Task& task, const Stop& s);
// Whether two register files are the same position (the flags the kernel sets for ptrace aside).
bool samePosition(const Regs& a, const Regs& b);

}  // namespace rwd
