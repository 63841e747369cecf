// The recorded program's own ptrace, emulated. The recorder is the kernel's tracer of every
// recorded task, so the kernel would refuse the program's PTRACE_ATTACH: the recorder keeps the
// program's tracer-tracee relations itself, stops a tracee where the kernel would have stopped it
// for its tracer (emulated stops), answers the tracer's ptrace requests and its waits for those
// stops, and resumes the tracee when told to. Replay needs nothing of this: what the tracer
// received is in its syscalls' records, and how the tracee went on is in the tracee's own events
// (the signal it was resumed with, a Run where it stopped in user code). docs/ptrace.md.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/events.h"

namespace rwd {

// What the tracer changed in its stopped tracee (PTRACE_SETREGS, POKEUSER, POKEDATA...). The
// recorder applies it to the real tracee at once, and records it as a PtraceSet event of the
// tracee when it goes on, for replay to apply at the same point.
struct EmulatedEdit {
  std::optional<Regs> before;  // the registers as it stopped, taken at the first change
  bool xstate = false;         // its floating-point or extended state was set
  std::vector<MemoryWrite> writes;
  std::optional<std::array<uint64_t, 5>> debugBefore;  // DR0-DR3, DR7 before the first change
};

// A stop of an emulated tracee, as its tracer's wait reports it.
struct EmulatedStop {
  int status = 0;           // the wait status
  int sig = 0;              // a signal-delivery stop's signal; 0 for an event stop
  bool fault = false;       // the signal is the fault of the tracee's instruction
  bool positioned = false;  // stopped in user code where a Preempt event names it
  bool atBoundary = false;  // stopped where its last syscall returned, before any user code
  bool inRestart = false;   // stopped while the kernel restarts the syscall the signal interrupted
  bool group = false;       // a group-stop or PTRACE_INTERRUPT's stop: it may be anywhere
  bool syscallEntry = false;  // PTRACE_SYSCALL's stops: at the entry of a syscall
  bool syscallExit = false;   // or at its exit
  bool execEvent = false;     // PTRACE_EVENT_EXEC, at the exit of its exec
  siginfo_t info{};
  unsigned long eventMsg = 0;  // PTRACE_GETEVENTMSG
  bool reported = false;       // a wait returned it
  EmulatedEdit edit;
};

struct EmulatedTracee {
  pid_t tracer = 0;  // the tracing thread: only it may make requests
  long options = 0;  // PTRACE_O_*
  bool seized = false;
  bool restarting = false;    // its last syscall was interrupted, and restarts when it goes on
  bool interrupting = false;  // its tracer's PTRACE_INTERRUPT (or attach to it stopped) is due
  // Resumed by its tracer while its process's stop is in force: that stop's signal, until a
  // SIGCONT.
  int outOfGroupStop = 0;
  bool syscallStops = false;  // resumed with PTRACE_SYSCALL: it stops at its next syscall
  bool entryDone = false;     // its syscall-entry stop is over: the syscall goes on
  bool execTrap = false;      // the SIGTRAP after its exec is on its way
  std::optional<EmulatedStop> stop;
};

// A tracee resumed by its tracer, waiting for its turn to run user code.
struct EmulatedResume {
  EmulatedStop from;
  int sig = 0;
};

// What a wait4 or waitid asks for.
struct WaitRequest {
  enum Kind { Any, Pid, Group } kind = Any;
  pid_t id = 0;
  int options = 0;
  bool waitid = false;
  uint64_t result = 0;  // where the status (wait4) or siginfo (waitid) goes
  uint64_t rusage = 0;
};

struct EmulatedPtrace {
  std::map<pid_t, EmulatedTracee> tracees;
  std::map<pid_t, EmulatedResume> resuming;
  // Threads whose syscall (a ptrace request, or a wait one of the emulated stops answers) the
  // recorder cancelled at entry and answers at its exit: the stop a wait takes.
  std::map<pid_t, std::optional<std::pair<pid_t, EmulatedStop>>> answering;
  std::set<pid_t> parkedWaiters;  // in a wait only emulated tracees can end, held at its exit
  // Per tracer process: the SIGCHLDs sent to it for stops, with what the kernel's would carry.
  std::map<pid_t, std::deque<siginfo_t>> sigchld;
};

// The name of a ptrace request, for messages.
std::string ptraceRequestName(long request);

}  // namespace rwd
