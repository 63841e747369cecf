// Starting a program under ptrace, for recording (the program) and replay (the stub).
#pragma once

#include <sys/ptrace.h>
#include <sys/types.h>

#include <string>
#include <vector>

namespace rwd {

// Every tracee of a session: syscall stops marked, exec and new tasks reported, and killed if
// the tracer dies.
constexpr long kPtraceOptions = PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL |
                                PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE;
// The recorder's: and a stop on the way out (PTRACE_EVENT_EXIT), where a task killed in a syscall
// still shows what the syscall returned (the kernel skips the syscall's exit stop for a task with
// SIGKILL pending).
constexpr long kRecordPtraceOptions = kPtraceOptions | PTRACE_O_TRACEEXIT;

// Forks a child that starts with default signal dispositions, nothing blocked and the tracer's
// stdin/stdout/stderr, stops itself under ptrace, and execs `exe` once resumed. Returns its pid,
// stopped, with the options set; `execErrFd` reads the errno of a failed exec.
pid_t spawnTraced(const std::string& exe, const std::vector<std::string>& argv,
                  const std::vector<std::string>& env, int* execErrFd);

// The same for the program to record, seized (PTRACE_SEIZE) rather than traced by request, in a
// process group of its own that it does not lead (`pgid`), as a shell runs a command: signals it
// sends its group (kill(0, ...)) do not reach the recorder, and it may call setsid().
pid_t spawnRecorded(const std::string& exe, const std::vector<std::string>& argv,
                    const std::vector<std::string>& env, int* execErrFd, pid_t* pgid);

// While it lives, the terminal on stdin (if the caller's process group had it in the foreground)
// has process group `pgid` in the foreground: the recorded program reads it and gets its Ctrl-C.
class TerminalForeground {
 public:
  explicit TerminalForeground(pid_t pgid);
  ~TerminalForeground();
  TerminalForeground(const TerminalForeground&) = delete;
  TerminalForeground& operator=(const TerminalForeground&) = delete;

 private:
  bool handedOver_ = false;
};

// Pins the calling thread (and so the tracees it spawns) to `cpu`, or to the CPU it runs on for
// -1: tracer and tracee on one CPU make a ptrace stop several times cheaper, and the recorded
// program's `cpuid` answers (which name the CPU) are the same in replay. Returns the CPU, or -1
// when it could not pin.
int pinToCpu(int cpu);

}  // namespace rwd
