// A record session: runs a program under ptrace and writes its trace (event stream + blobs).
// Every ptrace call of a session must come from the thread that called run().
#pragma once

#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/blob_store.h"
#include "core/event_stream.h"
#include "core/forced_sigsegv.h"
#include "core/remote_syscalls.h"
#include "core/spawn.h"
#include "core/syscall_buffers.h"
#include "core/task.h"
#include "record/emulated_ptrace.h"
#include "record/program_group.h"
#include "record/rdtsc_patch.h"
#include "record/seccomp_filter.h"
#include "record/shared_files.h"
#include "record/syscall_buffer.h"

namespace rwd {

struct RecordOptions {
  std::string exe;  // resolved path of the program
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::string traceDir;
  std::string preload;  // the syscall buffer's library (record/syscall_buffer.h); empty: none
};

// A process of the recorded tree, for the manifest.
struct ProcessInfo {
  struct Exec {
    std::string exe;
    std::vector<std::string> argv;
  };
  pid_t pid = 0;
  pid_t parent = 0;  // 0 for the recorded program itself
  std::vector<Exec> execs;
  std::vector<pid_t> threads;  // besides the first
};

struct RecordResult {
  int waitStatus = 0;
  uint64_t events = 0;
  uint64_t syscalls = 0;
  uint32_t tasks = 0;
  bool syscallBuffer = false;  // the program's syscalls went through the buffer's filter
  std::vector<ProcessInfo> processes;
  std::vector<BlobRef> blobs;  // the event stream included
};

// What a task waiting for its process's run token does once it gets it.
// Continue: from a stop of its process, after a SIGCONT. PtraceResume: resumed by the program's
// emulated tracer.
enum class Deferred : uint8_t { None, SyscallExit, Start, Resume, Continue, PtraceResume };

// What the recorder tracks for each task of the recorded tree.
struct RecordedTask {
  std::unique_ptr<Task> task;
  pid_t tgid = 0;   // its process
  pid_t token = 0;  // the run token it takes turns on to run user code: its process's, or the
                    // one of the processes it shares memory with
  Deferred deferred = Deferred::None;
  bool preemptSent = false;  // the recorder sent it SIGSTOP to take the token back
  std::chrono::steady_clock::time_point grantedAt;
  bool execed = true;     // false only for the first task until it execs the program
  bool newborn = false;   // created by a fork: its first stop is a SIGSTOP to swallow
  bool forkSeen = false;  // its parent's fork is recorded: it may run
  bool held = false;      // stopped, waiting for forkSeen
  bool inSyscall = false;
  // Its syscall under way has no event yet: recorded at its exit stop, or, if a SIGKILL took that
  // stop away, at its PTRACE_EVENT_EXIT (onExitStop).
  bool syscallOpen = false;
  bool bufferedStop = false;  // stopped in a syscall of the library's, which records it itself
  bool leaving = false;       // at or past its PTRACE_EVENT_EXIT: it runs no more code
  // Held at that stop until every thread of its process is at its own (settleLeaving), with the
  // record of the syscall the kill cut short, if any.
  bool heldAtExit = false;
  std::optional<Event> killedRecord;
  std::chrono::steady_clock::time_point leftAt;
  bool exiting = false;       // it called exit (the thread's, not the process's)
  bool groupStopped = false;  // in a stop of its process (SIGSTOP...), left in force
  // The stop signal it took came where its last syscall returned: its group-stop is there too
  // (before any user code), so a tracer's changes there replay where its last event left it.
  bool stopAtBoundary = false;
  // Asynchronous signals that landed in user code wait for the task's next syscall, where replay
  // can deliver them exactly: the signals pending when it was resumed from its last syscall
  // (the kernel delivers those before the task runs an instruction), and the held signals
  // (re-sent at the next syscall exit, or where they are after 5 ms).
  std::set<int> pendingAtBoundary;
  std::deque<siginfo_t> heldSignals;
  std::chrono::steady_clock::time_point heldSince;
  int resending = 0;            // a held signal re-sent at a syscall exit: record it there
  bool deliverHere = false;     // a held signal re-sent after waiting too long: record it anywhere
  bool fakeTsc = false;         // a PR_SET_TSC/PR_GET_TSC skipped at entry, answered at exit
  bool fakeAffinity = false;    // a sched_setaffinity skipped at entry: the recorder pins CPUs
  uint8_t echo = 0;             // the syscall under way sends data to stdout (1) or stderr (2)
  int tscMode = PR_TSC_ENABLE;  // what the program believes it set
  uint64_t sigmask = 0;         // its blocked signals at its last syscall exit
  bool sigmaskStale = true;     // a signal came since: read them again at the next syscall exit
  bool execPending = false;     // PTRACE_EVENT_EXEC seen, the exit stop will follow
  pid_t formerTid = 0;  // exec'ing from another thread, it took its process's first tid: its own
  bool forkRecorded = false;  // the fork's event was written at PTRACE_EVENT_FORK
  pid_t vforkChild = 0;       // a vfork child that has not exec'd or exited yet
  pid_t vforkParent = 0;
  bool parked = false;     // a vfork parent held at its syscall exit until its child execs
  SeccompFilters seccomp;  // the program's filters in force for the task
  SyscallEvent::Filtered filtered = SyscallEvent::Filtered::No;  // their verdict on this syscall
  std::optional<FilterInstall> filterInstall;                    // this syscall installs one
  bool claimed = false;  // cancelled: it claimed kRewindSyscallIp as its origin at entry
  Regs entryRegs{};
  bool compat = false;  // the syscall under way came through the 32-bit entry (int $0x80)
  EntryValues entryValues;
  // A syscall that returned ERESTART_RESTARTBLOCK: restart_syscall goes on with it, and writes
  // what it writes. `swallowed`: the program never saw it return (our SIGSTOP interrupted it).
  struct Interrupted {
    Regs entry;
    EntryValues values;
    bool swallowed;
  };
  std::optional<Interrupted> interrupted;  // the last syscall, if it was such a one
  std::optional<Interrupted> restarting;   // the one the restart_syscall under way goes on with
  std::vector<std::string> execArgv;       // read at execve entry, for the manifest
};

class RecordSession {
 public:
  explicit RecordSession(RecordOptions options);
  ~RecordSession();
  RecordResult run();

 private:
  void onStop(RecordedTask& t, const Stop& s);
  template <typename F>
  void guarded(pid_t tid, F&& f);
  void onEventStop(RecordedTask& t, int sig);
  void onSyscallEntry(RecordedTask& t);
  void onSyscallExit(RecordedTask& t);
  void onExitStop(RecordedTask& t);
  void settleLeaving(pid_t tgid, bool overdue);
  void letGo(RecordedTask& t);
  void collectKilled(pid_t tgid, std::vector<pid_t> released);
  void appendKilled(RecordedTask& t, Event e);
  bool dying(pid_t tid);
  void onFork(RecordedTask& t, bool vfork);
  void dropTask(RecordedTask& t);
  void takeOverLeader(pid_t leader);
  bool ptraceInvolves(pid_t tgid) const;
  bool acquire(RecordedTask& t, Deferred ifBusy);
  void release(RecordedTask& t);
  void grantNext(pid_t token);
  bool sharesMemory(pid_t tid) const;
  void checkSharedMapping(const RecordedTask& t, const struct stat& file, bool writable);
  bool openedForWriting(const RecordedTask& t, uint64_t fd) const;
  void captureShmat(const RecordedTask& t, SyscallEvent& s);
  void startTask(RecordedTask& t);
  void runFrom(RecordedTask& t);
  void preemptOverdue();
  void releaseExited();
  void releaseLeaving();
  pid_t waitNext(int* status);
  void onPreempt(RecordedTask& t);
  bool namePosition(RecordedTask& t);
  bool settle(RecordedTask& t);
  enum class Step { Done, Faulted, Left };
  Step stepOne(RecordedTask& t);
  enum class RunTo { Reached, Stopped, Left };
  RunTo runTo(RecordedTask& t, uint64_t addr, std::chrono::milliseconds limit);
  enum class Pass { Again, Elsewhere, Faulted, Left };
  Pass nextPass(RecordedTask& t, uint64_t at);
  std::set<pid_t> pendingStops(const RecordedTask& t) const;
  bool contended() const;
  void hold(RecordedTask& t, const siginfo_t& info);
  void resendHeld(RecordedTask& t);
  void resendOverdue();
  void releaseVforkParent(RecordedTask& child);
  void onSignal(RecordedTask& t, int sig);
  void dieOfFaultInInit(RecordedTask& t, const siginfo_t& info);
  bool emulateRdtsc(RecordedTask& t);
  bool ignoresSignal(pid_t tid, int sig) const;
  RemoteSyscalls::SignalTaker signalTaker(RecordedTask& t);
  bool defaultStop(pid_t tid, int sig) const;
  uint8_t echoTarget(pid_t tid, uint64_t fd) const;
  bool execUnderWay(pid_t tgid) const;  // a thread of the process is in execve
  void appendEndedByExec(pid_t tgid);
  bool claimOutput(RecordedTask& t);
  void refuseContendedPiFutex(const RecordedTask& t, const uint64_t* args) const;
  void releaseOutput(pid_t tid);
  RecordedTask& addTask(pid_t tid);
  Event syscallEvent(const RecordedTask& t, int64_t result) const;
  Event exitRecord(RecordedTask& t, int64_t result);
  // `file`: what the written descriptor names (a regular file).
  void captureMappedWrite(const RecordedTask& t, SyscallEvent& s, const struct stat& file);
  void captureProcMemWrite(const RecordedTask& t, SyscallEvent& s);
  pid_t procMemTarget(const RecordedTask& t, uint64_t fd, std::string* path = nullptr) const;
  bool freezeWrittenProcess(const RecordedTask& t, uint64_t fd);
  void retryMemWriters();
  void thaw(pid_t writer);
  void append(const Event& e);
  void appendBuffered();
  void onSeccompStop(RecordedTask& t);
  void patchVsyscall(RecordedTask& t);
  bool leaveBufferedCall(RecordedTask& t);
  bool positionAfterBufferedCall(RecordedTask& t);
  // The program's own ptrace, emulated (record/emulated_ptrace.cc).
  bool tracedByProgram(pid_t tid) const;
  bool ptraceEntry(RecordedTask& t, long nr, const uint64_t* args);
  int64_t ptraceExit(RecordedTask& t, int64_t result);
  bool ptraceWaitBlocks(RecordedTask& t, int64_t result);
  bool ptraceSwallowed(RecordedTask& t);
  bool ptraceStopsHere(const RecordedTask& t) const;
  bool ptraceSignalStop(RecordedTask& t, int sig, const siginfo_t& info, bool fault,
                        bool positioned, bool atBoundary);
  bool ptraceEventStop(RecordedTask& t, int event);
  bool ptraceGroupStop(RecordedTask& t, int sig);
  bool ptraceSyscallStops(const RecordedTask& t) const;
  bool ptraceExecStop(RecordedTask& t);
  void ptraceContinued(pid_t tgid);
  bool ptraceSyscallStop(RecordedTask& t, bool entry, bool runs = false);
  void ptraceAppendEdit(RecordedTask& t, const EmulatedStop& stop);
  int64_t ptraceEdit(RecordedTask& tracer, RecordedTask& tracee, EmulatedStop& stop,
                     const uint64_t* args);
  void ptraceResumeGranted(RecordedTask& t);
  void ptraceGone(pid_t tid);
  void fixSyntheticSigchld(RecordedTask& t, siginfo_t& info);
  int64_t ptraceRequest(RecordedTask& t, const uint64_t* args);
  void ptraceResume(pid_t tid, int sig);
  void ptraceEnterStop(RecordedTask& t, const EmulatedStop& stop);
  std::optional<std::pair<pid_t, EmulatedStop>> ptraceTakeStop(const RecordedTask& waiter,
                                                               const WaitRequest& w, bool take);
  bool ptraceMayReport(const RecordedTask& waiter, const WaitRequest& w) const;
  void ptraceWakeWaiters(pid_t tracerTgid);
  void ptraceInterruptAgain(pid_t tid);

  RecordOptions options_;
  BlobStore blobs_;
  std::string eventsPath_;
  EventWriter events_;
  std::map<pid_t, RecordedTask> tasks_;
  // One thread of a process (or of processes sharing memory) runs user code at a time: the
  // token's holder per token, and the threads waiting for it in order (a fair queue: none waits
  // more than one turn of each other).
  std::map<pid_t, pid_t> holder_;
  std::map<pid_t, std::deque<pid_t>> waiting_;
  pid_t initial_ = -1;
  int execErrFd_ = -1;  // reads the errno of the program's failed exec
  int waitStatus_ = 0;  // the program's end
  std::optional<TerminalForeground> terminal_;
  std::optional<ProgramGroup> group_;
  pid_t next_ = 0;  // a task whose next stop is taken before any other's
  std::deque<std::pair<pid_t, int>> requeued_;  // wait statuses taken early, handled next
  // The threads of a process that another writes into through /proc/PID/mem, and the writer:
  // their stops wait, set aside, until the writer's syscall is in the stream.
  std::map<pid_t, pid_t> frozen_;
  std::vector<std::pair<pid_t, int>> frozenStops_;
  // Writers held at their syscall's entry until the process they write into is still, since when.
  std::map<pid_t, std::chrono::steady_clock::time_point> memWriters_;
  uint32_t taskCount_ = 0;
  std::vector<ProcessInfo> processes_;
  std::map<pid_t, std::set<std::pair<dev_t, ino_t>>> mappedFiles_;  // per process, private
  std::set<std::pair<dev_t, ino_t>> growable_;  // mapped private through an emulated file
  SharedFiles sharedFiles_;
  std::map<pid_t, std::pair<uint64_t, uint64_t>> vdso_;  // per process: where its vDSO is
  // Per process: the ends of threads its exec under way killed, which follow its exec event
  // (replay's exec ends them).
  std::map<pid_t, std::vector<Event>> endedByExec_;
  // Per process: the SIGSEGV action its last rt_sigaction set, and the syscall instruction of
  // that call, through which it is set again after an rdtsc trap (core/forced_sigsegv.h).
  std::map<pid_t, std::pair<KernelSigaction, uint64_t>> segvActions_;
  uint64_t syscalls_ = 0;
  std::set<pid_t> groupExited_;  // processes whose exit_group (or a filter's kill) is recorded
  // Writes to stdout and stderr run one at a time, each recorded before the next starts, so the
  // stream has them in the order the kernel wrote them (replay echoes them in the stream's order):
  // the task whose write is under way, and those stopped at their entry until it is recorded.
  pid_t outputBusy_ = 0;
  std::deque<pid_t> outputWaiting_;
  int cpu_ = -1;                           // the CPU the recorded tree runs on
  std::optional<SyscallBuffers> buffers_;  // when recording with the syscall buffer
  RdtscPatcher rdtscPatcher_;              // with the buffer: its library reads the TSC
  TscClock tscClock_;                      // what the program's rdtsc reads
  enum class BufferFilter : uint8_t { NotYet, On, Refused } bufferFilter_ = BufferFilter::NotYet;
  struct stat stdout_ {};
  struct stat stderr_ {};
  EmulatedPtrace ptrace_;
};

}  // namespace rwd
