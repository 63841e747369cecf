// A record session: runs a program under ptrace and writes its trace (event stream + blobs).
// Every ptrace call of a session must come from the thread that called run().
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "core/blob_store.h"
#include "core/event_stream.h"
#include "core/syscall_buffers.h"
#include "core/task.h"

namespace rwd {

struct RecordOptions {
  std::string exe;  // resolved path of the program
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::string traceDir;
};

struct RecordResult {
  int waitStatus = 0;
  uint64_t events = 0;
  uint64_t syscalls = 0;
  uint32_t tasks = 0;
  std::vector<BlobRef> blobs;  // the event stream included
};

class RecordSession {
 public:
  explicit RecordSession(RecordOptions options);
  ~RecordSession();
  RecordResult run();

 private:
  void spawn();
  void onSyscallEntry();
  void onSyscallExit();
  void onSignal(int sig);
  bool emulateRdtsc();
  uint8_t echoTarget(uint64_t fd) const;

  RecordOptions options_;
  BlobStore blobs_;
  std::string eventsPath_;
  EventWriter events_;
  std::unique_ptr<Task> task_;
  pid_t pid_ = -1;
  bool execed_ = false;
  bool inSyscall_ = false;
  bool execPending_ = false;
  Regs entryRegs_{};
  EntryValues entryValues_;
  uint64_t syscalls_ = 0;
  struct stat stdout_ {};
  struct stat stderr_ {};
};

}  // namespace rwd
