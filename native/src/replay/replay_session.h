// A replay session: re-executes a recorded run from its trace in a fresh stub process, with
// every syscall emulated from the trace or re-executed, checking at each event that the
// program does what it did when recorded.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "core/event_stream.h"
#include "core/task.h"
#include "replay/address_space_builder.h"

namespace rwd {

struct ReplayOptions {
  std::string traceDir;
  std::string eventsBlob;  // sha256 of the event stream
  std::string stubPath;
  int stdoutFd = 1;  // where the program's recorded stdout and stderr go
  int stderrFd = 2;
};

struct ReplayResult {
  int waitStatus = 0;
  uint64_t events = 0;
};

class ReplaySession {
 public:
  explicit ReplaySession(ReplayOptions options);
  ~ReplaySession();
  ReplayResult run();

 private:
  void spawnStub();
  bool nextEvent();
  [[noreturn]] void diverged(const std::string& got);
  void onSyscall();
  void onSignal(int sig);
  void execInPlace(const Regs& at);
  void emulate(Regs r, const SyscallEvent& ev);
  void replayExecuted(const SyscallEvent& ev);
  void replayMmap(Regs r, const SyscallEvent& ev);
  void replayBrk(Regs r, const SyscallEvent& ev);
  void echo(const SyscallEvent& ev);
  void finishSyscall(Regs r, int64_t result);
  Stop runInPlace(const Regs& at);
  void injectPendingSignal();

  ReplayOptions options_;
  std::string blobDir_;
  EventReader reader_;
  Event next_;
  uint64_t eventIndex_ = 0;  // index of next_
  bool haveNext_ = false;
  pid_t pid_ = -1;
  std::unique_ptr<Task> task_;
  StubLayout stub_;
  uint64_t brkEnd_ = 0;
  int deliverSig_ = 0;
  bool done_ = false;
  int waitStatus_ = 0;
};

}  // namespace rwd
