// A replay under a debugger's control, forwards and backwards, over the recording of one
// process (the recorded program, or another process of the tree chosen by its pid); the other
// processes of the tree replay alongside, unseen.
//
// Without a branch counter a moment cannot be named by an instruction count. It is named
// instead by how to get there again: a segment (a stretch of one task's user code between two
// events, known by its key) and the debugger actions that led from the segment's start to the
// moment (run to the n-th stop of a set of breakpoints, step n instructions). Replay is
// deterministic, so the same actions always lead to the same place. Going back restores a
// checkpoint (a fork of the process at a segment's start) and replays forwards from there.
#pragma once

#include <sys/user.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "replay/breakpoints.h"
#include "replay/checkpoint.h"
#include "replay/code_coverage.h"
#include "replay/replay_session.h"

namespace rwd {

struct Action {
  enum Kind : uint8_t {
    Continue,  // to the count-th stop of breakpoint set `config`
    Step,      // count instructions
    ToEnd,     // to the end of the segment: the instruction that ended it, not run yet
    Position,  // to position `config` (an interrupted moment: registers and stack)
  } kind;
  uint32_t config = 0;
  uint64_t count = 0;
  bool operator==(const Action& o) const {
    return kind == o.kind && config == o.config && count == o.count;
  }
};

struct Moment {
  uint64_t segment = 0;
  uint32_t tid = 0;  // whose segment
  std::vector<Action> actions;
};

// What going back has to work with, and how it went: checkpoints held, and the windows between
// them that reverse-continue replayed, or skipped because their code coverage shows that no
// breakpoint can have been hit there.
struct HistoryStats {
  uint64_t checkpoints = 0;
  uint64_t windowsReplayed = 0;
  uint64_t windowsSkipped = 0;
};

struct DebugStop {
  // Signal: the thread received a recorded signal, not delivered yet (a crash, or one a handler
  // takes); the next resume delivers it.
  // SyscallEntry: at a syscall's instruction, not run yet; SyscallReturn: right after it returned
  // (a catchpoint's stops, forwards only).
  // Exec: the debuggee now runs another program than the one last reported: forwards, at the
  // first instruction after its execve; backwards, at that execve's instruction, in the program
  // before.
  enum Reason {
    Breakpoint,
    Watchpoint,
    Step,
    Begin,
    End,
    Interrupted,
    Signal,
    SyscallEntry,
    SyscallReturn,
    Exec
  } reason;
  uint32_t tid = 0;
  Watch watch{};      // Watchpoint: the one that fired
  int signal = 0;     // Signal: its number
  long syscall = -1;  // SyscallEntry, SyscallReturn: its number
};

class DebugSession {
 public:
  // Debugs process `pid` (0: the recorded program) from its first moment that can be gone back
  // to where it runs program `exe` (empty: any): its start, or the exec of `exe`.
  explicit DebugSession(ReplayOptions options, uint32_t pid = 0, const std::string& exe = {});
  ~DebugSession();

  uint32_t pid() const { return pid_; }
  std::vector<uint32_t> threads() const;
  // A thread inside a syscall shows the moment before its syscall instruction.
  Regs registers(uint32_t tid, user_fpregs_struct* fp);
  std::vector<uint8_t> readMemory(uint64_t addr, size_t len);
  const ProgramImage& program() const;
  // The debuggee's mappings as /proc/PID/maps shows them, with the protections the program
  // gave its code (which going back's code coverage takes away for a while).
  std::string memoryMap() const;

  // A breakpoint stops only where one of its conditions (if any) is true.
  void setBreakpoint(uint64_t addr, std::vector<Condition> conditions = {});
  void removeBreakpoint(uint64_t addr);
  void setWatchpoint(const Watch& w);
  void removeWatchpoint(const Watch& w);
  // Continuing forwards stops at the entry and return of these syscalls (all of them when
  // `all`); off: none.
  void catchSyscalls(bool on, bool all, const std::set<long>& nrs);

  // tid 0: the current thread.
  DebugStop resume(bool reverse, bool step, uint32_t tid);
  // Forwards, steps thread `tid` until it leaves [start, end), or stops at a breakpoint.
  DebugStop stepRange(uint32_t tid, uint64_t start, uint64_t end);
  uint64_t when() const { return now_.segment; }
  uint64_t events() const { return events_; }
  DebugStop seek(uint64_t event);
  // Goes to a moment named from outside the session (a query's answer, docs/queries.md): the
  // start of the segment with key `segment`, which must be thread `tid`'s, then the count-th
  // stop there of `stops`; or, with `toEnd`, the end of that segment.
  DebugStop openMoment(uint64_t segment, uint32_t tid, const Breakpoints& stops, uint64_t count,
                       bool toEnd);
  HistoryStats stats() const;
  // A word another thread sets to non-zero to interrupt a running resume or seek. Forwards it
  // stops soon after, a few instructions on from where the debuggee was (the first moment that
  // can be named again); backwards, at the start of the window being replayed.
  void watchInterrupt(const int32_t* flag);
  // A word where the session keeps the event it has reached (capped at INT32_MAX), for another
  // thread to show progress while a long resume runs.
  void watchProgress(int32_t* word) { progress_ = word; }

 private:
  enum class Arrival { Same, Arrived, End };
  enum class SegmentEnd : uint8_t { Unknown, Syscall, Signal, Position, Exit };
  struct Segment {
    uint32_t tid;
    SegmentEnd end = SegmentEnd::Unknown;
    int signal = 0;     // delivered as it starts
    long syscall = -1;  // SegmentEnd::Syscall: its number
    // Breakpoint addresses that a run of the whole segment, with them armed, never reached.
    std::set<uint64_t> unreached;
  };
  struct Checkpoint {
    Moment at;
    ReplayState state;
    CodeTracking coverage;
    std::vector<ProcessCopy> processes;
    std::vector<pid_t> pids() const;
  };
  struct Candidate {
    Moment at;
    DebugStop stop;
  };
  // The stops of data watchpoints that a reverse-continue's scan met before the one it went to,
  // oldest first, for the next reverse-continue from where it stopped (`from`, with the same
  // set): replaying the same window again would meet them again. `below`: where the window
  // began, to go on from when none is left.
  struct EarlierStops {
    Moment from;
    uint32_t config = 0;
    Moment below;
    std::vector<Candidate> stops;
  };

  DebugStop seekTo(uint64_t event);
  DebugStop stepOverRange(uint32_t tid, uint64_t start, uint64_t end);
  DebugStop continueForward(uint32_t config);
  DebugStop stepForward(uint32_t tid);
  DebugStop awaitThread(uint32_t tid, uint32_t config);
  DebugStop continueBackward(uint32_t config);
  DebugStop backTo(const Candidate& found);
  DebugStop stepBackward(uint32_t tid);
  // watchStop: m is a data watchpoint's stop.
  std::optional<Moment> previousMoment(const Moment& m, bool watchStop = false);
  std::optional<Moment> predecessorByBreakpoint(const Moment& m, const Moment& base,
                                                const Action& last);

  Arrival toDebuggeeSegment();
  void arrive(ReplayTask& t);
  std::optional<Trap> runDebuggee(const Breakpoints* breaks, uint32_t config, bool step,
                                  int stopAt = -1, bool interruptible = false);
  bool isFinal(const ReplayTask& t) const;
  DebugStop reachedEnd();
  DebugStop signalHere(const ReplayTask& t);
  DebugStop stopHere(DebugStop::Reason reason, const Trap* trap, uint32_t config);
  DebugStop interruptHere();
  bool atPosition(const PreemptEvent& p);
  void watchForInterrupts();
  bool stopIsIn(const Breakpoints& set, const Trap& trap, uint32_t armedConfig);
  bool afterItsInstruction(const Trap& trap, uint32_t armedConfig) const;

  void goTo(const Moment& m);
  void goToKeepingStops(const Moment& m);
  static std::optional<std::vector<Action>> remainder(const Moment& from, const Moment& to);
  void runActions(const Moment& target, const std::vector<Action>& rest, const Breakpoints* observe,
                  std::vector<Candidate>* found);
  void scan(const Moment& end, uint32_t config, uint64_t floor, std::vector<Candidate>* found);
  int checkpointBefore(const Moment& m, bool strict) const;
  void restore(const Checkpoint& c);
  Checkpoint checkpointHere();
  void maybeCheckpoint();
  void markCoverage();
  bool mayStopIn(const Breakpoints& set, uint64_t first, const Moment& end) const;
  void noteUnreached(const Breakpoints* breaks, uint64_t from);
  void stepped();
  void keepShortcut();
  uint32_t configId(const Breakpoints& b);
  bool interrupted() const { return interrupt_ && __atomic_load_n(interrupt_, __ATOMIC_RELAXED); }
  uint64_t rip(const ReplayTask& t) const;
  bool breaksHere(const Breakpoints& set, const ReplayTask& t) const;
  const Watch* writtenBySyscall(const Breakpoints& set) const;
  bool catches(long nr) const;
  long returnedFrom(uint32_t tid) const;
  size_t execsBefore(const Moment& m) const;
  DebugStop reported(DebugStop stop);

  ReplaySession replay_;
  uint32_t pid_ = 0;
  CodeCoverage coverage_;
  HistoryStats stats_;
  const int32_t* interrupt_ = nullptr;
  int32_t* progress_ = nullptr;
  // While an interruptible run is under way: the task it runs, which the watcher kicks once the
  // interrupt word is set. Under the lock, so that a kick goes only to a task that runs.
  std::mutex kickLock_;
  pid_t running_ = 0;
  std::atomic<bool> closing_{false};
  std::thread watcher_;
  std::deque<PreemptEvent> positions_;  // of Position actions; a deque: references stay valid
  uint64_t events_ = 0;
  Breakpoints breaks_;
  bool catchOn_ = false, catchAll_ = false;
  std::set<long> catchNrs_;
  std::deque<Breakpoints> configs_;  // a deque: references stay valid as it grows
  Moment now_;
  bool atEnd_ = false;
  std::vector<Checkpoint> checkpoints_;  // at segment starts, by segment
  std::vector<Checkpoint> shortcuts_;    // inside segments, oldest first
  std::optional<EarlierStops> earlier_;
  uint64_t steps_ = 0;
  std::optional<uint64_t> noteBudget_;    // while guessing: stops a scan may note before giving up
  uint64_t lastGuess_ = 0;                // the predecessor a guess found last
  std::map<uint64_t, Segment> segments_;  // the debuggee's segments seen so far
  std::set<uint64_t> execs_;              // those that begin a program its execve started
  // While the active segment runs from its start with code coverage on: the breakpoints armed in
  // every run of it so far that it has not reached (nullopt before its first run). Unlike
  // coverage, per address: a breakpoint left beside a hot loop does not make every window replay.
  bool runFromStart_ = false;
  std::optional<std::set<uint64_t>> unreachedRun_;
  size_t shownExecs_ = 0;  // execsBefore() the moment the debugger was last told
  std::chrono::steady_clock::time_point sinceCheckpoint_;
};

}  // namespace rwd
