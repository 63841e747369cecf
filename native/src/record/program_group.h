#pragma once

#include <sys/types.h>

namespace rwd {

// The process group of a program being recorded, known while the recording runs, so that a
// request to end it that only rewind received (a SIGTERM from kill, timeout or a service
// manager) reaches the program as it would have without rewind in between.
class ProgramGroup {
 public:
  explicit ProgramGroup(pid_t pgid);
  ~ProgramGroup();
  ProgramGroup(const ProgramGroup&) = delete;
  ProgramGroup& operator=(const ProgramGroup&) = delete;

  // Sends `sig` to the process group of every program being recorded in this process.
  static void signalAll(int sig);

 private:
  pid_t pgid_;
};

}  // namespace rwd
