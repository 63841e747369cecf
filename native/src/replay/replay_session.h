// A replay session: re-executes a recorded run from its trace in a fresh stub process, with
// every syscall emulated from the trace or re-executed, checking at each event that the
// program does what it did when recorded.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "core/event_stream.h"
#include "core/forced_sigsegv.h"
#include "core/remote_syscalls.h"
#include "core/task.h"
#include "replay/address_space_builder.h"
#include "replay/breakpoints.h"
#include "replay/code_coverage.h"
#include "replay/emulated_files.h"
#include "replay/position_trap.h"
#include "replay/syscall_feed.h"

namespace rwd {

struct ReplayOptions {
  std::string traceDir;
  std::string eventsPath;  // the event stream: a blob, or events.partial of a cut-short trace
  std::string stubPath;
  // How divergence messages name the trace for `rewind dump`: a server's worker names the trace
  // id, not its scratch directory. Empty: traceDir.
  std::string traceName;
  int stdoutFd = 1;  // where the program's recorded stdout and stderr go (-1: nowhere)
  int stderrFd = 2;
};

struct ReplayResult {
  int waitStatus = 0;
  uint64_t events = 0;
};

// What replay knows of a task, known by the tid it had when recorded.
struct ReplayTaskState {
  uint32_t recordedTid = 0;
  uint32_t tgid = 0;   // its process, as recorded
  uint32_t space = 0;  // its address space: key of ReplaySession's spaces
  StubLayout stub;
  int deliverSig = 0;             // signal to deliver at the next resume
  std::optional<Regs> vforkRegs;  // set while a vfork parent waits for its child to exec
  int64_t vforkResult = 0;
  std::optional<Stop> pending;  // where its last stretch of user code stopped, not yet matched
  bool parked = false;          // waits for a Run event (new, or after a fork or a preemption)
  bool atPosition = false;      // stopped at the position of its next Preempt event
  bool tracerHold = false;      // stays where its last event left it, for its tracer's changes
  bool exited = false;
  int exitStatus = 0;    // wait status, once exited
  uint64_t sigmask = 0;  // its blocked signals when it last went back to user code
  // Its last stop was a syscall that replay emulated: the kernel ran nothing, so `sigmask` is
  // still its mask (user code alone cannot change it).
  bool maskKept = false;
  std::vector<Watch> watches;  // in its debug registers
  // Where the kernel clears its tid when it exits (CLONE_CHILD_CLEARTID); 0: nowhere.
  uint64_t clearChildTid = 0;
  uint64_t robustList = 0;  // the head it gave set_robust_list; 0: none
  // The syscall of its next event, which replay executes, ran where the program made it
  // (runActive) and returned this: the task is at its exit.
  std::optional<long> ranInPlace;
  // The syscall buffer in which replay last gave it values of the TSC (RWD_SYS_TSC_NEXT): at its
  // next stop, it must have read them all.
  uint64_t tscBuffer = 0;
};

struct ReplayTask : ReplayTaskState {
  std::unique_ptr<Task> task;
};

// A process's program, as its last exec set it up.
struct ProgramImage {
  std::string exe;
  std::vector<uint8_t> auxv;
};

// What belongs to an address space, not to one of the threads that share it (as rr's
// AddressSpace): a thread's sbrk moves the heap end of all of them. Known by the recorded tgid
// of the process whose exec (or fork) made it; threads, and a vfork child until it execs, share
// their parent's.
struct AddressSpace {
  uint64_t brkEnd = 0;  // end of the emulated heap
  ProgramImage program;
  TrampolinePages trampolines;
  // Descriptors of the files replay maps, open in the process (ReplaySession::mapSource), by
  // blob or emulated file.
  std::map<std::string, long> sources;
};

// How a debugger runs the active task's user code.
struct RunControl {
  const Breakpoints* breaks = nullptr;  // nullptr: run to the end of the stretch
  bool step = false;                    // one instruction
  uint64_t skipAt = ~0ull;  // no breakpoint here on the first resume (continuing from it)
  // A position of the debugger's in this segment (the first time the task's registers and
  // stack are these): the run stops there, with Trap::Position.
  const PreemptEvent* stopAt = nullptr;
  // Whether a kick (core/kick.h) stops the run, with Trap::Interrupted; otherwise it is ignored.
  bool interruptible = false;
  // Whether the task's buffered syscalls may be answered without a stop (replay/syscall_feed.h),
  // when nothing else above is asked for: run() only, never a debugger.
  bool feed = false;
};

// Why user code stopped for the debugger.
struct Trap {
  enum Kind { Breakpoint, Watchpoint, Step, Position, Interrupted } kind;
  int watch = -1;  // index in RunControl::breaks->watches
};

// Everything a replay needs to go on from a stop of one of its tasks: with copies of the
// processes and their threads, it is a checkpoint.
struct ReplayState {
  ReaderMark mark;
  Event next;
  uint64_t eventIndex = 0;
  bool haveNext = false;
  std::vector<ReplayTaskState> tasks;
  uint32_t active = 0;
  uint64_t segmentKey = 0;
  bool segmentResumed = false;
  std::optional<Event> segmentEnd;
  std::vector<std::pair<uint64_t, uint64_t>> segmentWrites;
  int waitStatus = 0;
  std::map<uint32_t, AddressSpace> spaces;
};

class ReplaySession {
 public:
  explicit ReplaySession(ReplayOptions options);
  ~ReplaySession();
  ReplayResult run();

  // Stepping, for a debugger. Replay alternates between applying events and running a task's
  // stretch of user code (a segment) up to its next stop; a segment is known by its key, the
  // index of the first event after it.
  void start();
  // Applies events until a segment is due (true) or the stream ends (false).
  bool advanceToSegment();
  // The task whose segment is due or under way, or nullptr.
  ReplayTask* active();
  uint64_t segmentKey() const { return segmentKey_; }
  bool segmentResumed() const { return segmentResumed_; }
  // Memory (address, length) that the syscall the active task returned from wrote.
  const std::vector<std::pair<uint64_t, uint64_t>>& segmentWrites() const { return segmentWrites_; }
  // Runs the active segment: returns a trap the debugger asked for, or nullopt once the segment
  // has ended (its stop waits for its event, as in run()).
  std::optional<Trap> runActive(const RunControl& control);
  // Throws the divergence or cut-short error that run() would at the end of the stream.
  void checkEnd();
  const std::map<uint32_t, ReplayTask>& tasks() const { return tasks_; }
  ReplayTask* task(uint32_t recordedTid);
  const ProgramImage* program(uint32_t tgid) const;
  uint32_t initialTid() const { return initialTid_; }
  const EventReader& reader() const { return reader_; }
  // Follows which code a process runs (a debugger's, for going back); nullptr: none.
  void followCode(CodeCoverage* coverage) { coverage_ = coverage; }
  // Whether replay is where saveState() can be taken: every thread alive and stopped where a
  // copy can be made of it, and no shared memory (a copy would share it with the original).
  bool checkpointable() const;
  ReplayState saveState() const;
  // Takes up `state` with copies of its tasks (real tids by recorded tid); ends the tasks it had.
  void restoreState(const ReplayState& state, const std::map<uint32_t, pid_t>& copies);

 private:
  AddressSpace& space(const ReplayTask& t) { return spaces_.at(t.space); }
  void spawnStub();
  void activate(ReplayTask& t);
  void applyPtraceSet(ReplayTask& t);
  void applyEvent();
  bool nextEvent();
  [[noreturn]] void diverged(const ReplayTask& t, const std::string& got);
  [[noreturn]] void divergedResult(const SyscallEvent& ev, long got);
  [[noreturn]] void failDiverged(uint64_t event, const std::string& what);
  void onStop(ReplayTask& t, const Stop& s);
  void onSyscall(ReplayTask& t);
  void onSignal(ReplayTask& t, int sig);
  void applyPatch(ReplayTask& t, Regs r);
  void giveTsc(ReplayTask& t, const Regs& r, uint64_t header);
  void checkTscRead(ReplayTask& t, const std::string& got);
  void onExit(ReplayTask& t, const Stop& s);
  void execInPlace(ReplayTask& t, const Regs& at);
  void collectEndedByExec(const ReplayTask& t);
  void forceFilterTrap(ReplayTask& t);
  void emulate(ReplayTask& t, Regs r, const SyscallEvent& ev);
  void writeResults(ReplayTask& t, const SyscallEvent& ev);
  void applyStackLimit(ReplayTask& t, const SyscallEvent& ev);
  bool interruptedUnderOwnMask(ReplayTask& t, const Regs& r, const SyscallEvent& ev);
  void replayExecuted(ReplayTask& t, const SyscallEvent& ev);
  bool runsInPlace(const ReplayTask& t, const std::optional<Event>& next) const;
  Stop atRunningEntry(ReplayTask& t, Stop entry);
  void checkExecuted(ReplayTask& t, const SyscallEvent& ev, const uint64_t* args, long got);
  void applyThreadArea(ReplayTask& t, const SyscallEvent& ev);
  void killAsFiltered(ReplayTask& t, const Regs& at, const SyscallEvent& ev);
  void replayMmap(ReplayTask& t, Regs r, const SyscallEvent& ev);
  void replayShm(ReplayTask& t, Regs r, const SyscallEvent& ev);
  void shmAttach(ReplayTask& t, RemoteSyscalls& remote, const SyscallEvent& ev);
  void shmDetach(ReplayTask& t, RemoteSyscalls& remote, const SyscallEvent& ev);
  long mapSource(ReplayTask& t, RemoteSyscalls& remote, const SyscallEvent& ev);
  void replayBrk(ReplayTask& t, Regs r, const SyscallEvent& ev);
  void replayFork(ReplayTask& t, const Regs& at, const SyscallEvent& ev);
  void echo(const SyscallEvent& ev, const std::vector<uint8_t>& data);
  [[noreturn]] void divergedSent(const SyscallEvent& ev, const std::vector<uint8_t>& data);
  void finishSyscall(ReplayTask& t, Regs r, int64_t result);
  std::optional<Stop> enterInPlace(ReplayTask& t, const Regs& at);
  Stop runInPlace(ReplayTask& t, const Regs& at);
  Stop resumeInKernel(ReplayTask& t);
  // Whether the task is its process's first thread and others are alive: its exit is then
  // reported only after theirs.
  bool leadsLiveThreads(const ReplayTask& t) const;
  void exitGroupInPlace(ReplayTask& t, const Regs& at);
  void rebuild(ReplayTask& t);
  void endSegment(ReplayTask& t, const Stop& s);
  bool mayFeed(const ReplayTask& t, const RunControl& control) const;
  void takeFeed(ReplayTask& t, const Stop& s);
  bool killsProcess(const ReplayTask& t, int sig) const;
  Stop waitForProcessEnd(ReplayTask& t);
  std::optional<Event> nextEventOf(const ReplayTask& t);
  void collectDeath(ReplayTask& t);
  void releaseRobustFutexes(ReplayTask& t);
  void releaseProcessRobustFutexes(uint32_t tgid);
  static std::string describeStop(const Stop& s);

  ReplayOptions options_;
  FileMemory fileMemory_;  // of blobs_ and sharedFiles_
  TraceBlobs blobs_;
  EventReader reader_;
  Event next_;
  uint64_t eventIndex_ = 0;  // index of next_
  bool haveNext_ = false;
  std::map<uint32_t, ReplayTask> tasks_;
  uint32_t initialTid_ = 0;
  int waitStatus_ = 0;
  uint32_t active_ = 0;  // recorded tid of the task whose segment is due or under way
  uint64_t segmentKey_ = 0;
  bool segmentResumed_ = false;
  std::optional<Event> segmentEnd_;  // the event that ends the segment: its task's next one
  // Memory (address, length) written by the syscall that returned just before the segment.
  std::vector<std::pair<uint64_t, uint64_t>> segmentWrites_;
  std::vector<std::pair<uint64_t, uint64_t>> syscallWrites_;  // by the last emulated syscall
  uint64_t echoed_ =
      0;  // output of events before this one was written already (replay may go back)
  std::map<uint32_t, AddressSpace> spaces_;
  EmulatedFiles sharedFiles_;
  // Per process (recorded tgid): the SIGSEGV action its last rt_sigaction set, set again after
  // an rdtsc trap (core/forced_sigsegv.h).
  std::map<uint32_t, KernelSigaction> segvActions_;
  CodeCoverage* coverage_ = nullptr;
  SyscallFeed feed_;  // of the active task, while its segment runs
};

}  // namespace rwd
