#include "record/program_group.h"

#include <signal.h>

#include <mutex>
#include <set>

namespace rwd {

namespace {

// Recordings run on worker threads; the request comes from the main thread.
std::mutex groupsMutex;
std::set<pid_t> groups;

}  // namespace

ProgramGroup::ProgramGroup(pid_t pgid) : pgid_(pgid) {
  std::lock_guard<std::mutex> lock(groupsMutex);
  groups.insert(pgid_);
}

ProgramGroup::~ProgramGroup() {
  std::lock_guard<std::mutex> lock(groupsMutex);
  groups.erase(pgid_);
}

void ProgramGroup::signalAll(int sig) {
  std::lock_guard<std::mutex> lock(groupsMutex);
  for (pid_t pgid : groups) kill(-pgid, sig);
}

}  // namespace rwd
