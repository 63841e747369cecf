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
#include "core/task.h"
#include "replay/address_space_builder.h"

namespace rwd {

struct ReplayOptions {
  std::string traceDir;
  std::string eventsPath;  // the event stream: a blob, or events.partial of a cut-short trace
  std::string stubPath;
  int stdoutFd = 1;  // where the program's recorded stdout and stderr go
  int stderrFd = 2;
};

struct ReplayResult {
  int waitStatus = 0;
  uint64_t events = 0;
};

// A replayed task, known by the tid it had when recorded.
struct ReplayTask {
  uint32_t recordedTid = 0;
  uint32_t tgid = 0;  // its process, as recorded
  std::unique_ptr<Task> task;
  StubLayout stub;
  uint64_t brkEnd = 0;            // end of the emulated heap
  int deliverSig = 0;             // signal to deliver at the next resume
  std::optional<Regs> vforkRegs;  // set while a vfork parent waits for its child to exec
  int64_t vforkResult = 0;
  std::optional<Stop> pending;  // where its last stretch of user code stopped, not yet matched
  bool parked = false;          // waits for a Run event (new, or after a fork or a preemption)
  bool atPosition = false;      // stopped at the position of its next Preempt event
  bool exited = false;
  int exitStatus = 0;  // wait status, once exited
};

class ReplaySession {
 public:
  explicit ReplaySession(ReplayOptions options);
  ~ReplaySession();
  ReplayResult run();

 private:
  void spawnStub();
  bool nextEvent();
  [[noreturn]] void diverged(const ReplayTask& t, const std::string& got);
  [[noreturn]] void divergedResult(const SyscallEvent& ev, long got);
  void onStop(ReplayTask& t, const Stop& s);
  void onSyscall(ReplayTask& t);
  void onSignal(ReplayTask& t, int sig);
  void onExit(ReplayTask& t, const Stop& s);
  void execInPlace(ReplayTask& t, const Regs& at);
  void emulate(ReplayTask& t, Regs r, const SyscallEvent& ev);
  void replayExecuted(ReplayTask& t, const SyscallEvent& ev);
  void replayMmap(ReplayTask& t, Regs r, const SyscallEvent& ev);
  void replayBrk(ReplayTask& t, Regs r, const SyscallEvent& ev);
  void replayFork(ReplayTask& t, const Regs& at, const SyscallEvent& ev);
  void echo(ReplayTask& t, const SyscallEvent& ev);
  void finishSyscall(ReplayTask& t, Regs r, int64_t result);
  std::optional<Stop> enterInPlace(ReplayTask& t, const Regs& at);
  Stop runInPlace(ReplayTask& t, const Regs& at);
  void exitGroupInPlace(ReplayTask& t, const Regs& at);
  void rebuild(ReplayTask& t);
  void runSegment(ReplayTask& t);
  void runToPosition(ReplayTask& t);
  void collectDeath(ReplayTask& t);
  static std::string describeExit(int status);
  static std::string describeStop(const Stop& s);

  ReplayOptions options_;
  std::string blobDir_;
  EventReader reader_;
  Event next_;
  uint64_t eventIndex_ = 0;  // index of next_
  bool haveNext_ = false;
  std::map<uint32_t, ReplayTask> tasks_;
  uint32_t initialTid_ = 0;
  int waitStatus_ = 0;
};

}  // namespace rwd
