// Pid namespaces: a task of the recorded tree that lives in a pid namespace of its own sees
// other pids than the recorder (clone's result, getpid, wait4, kill...). Those that syscalls
// return are recorded as the task saw them; the stream names tasks by the recorder's pids.
#pragma once

#include <sys/types.h>

namespace rwd {

// A new task's pid as its parent (`parent`) and as the task itself (`child`) see it; both are
// `child` when neither lives in a pid namespace of its own.
struct ChildPids {
  pid_t seenByParent;
  pid_t seenByItself;
};

ChildPids childPids(pid_t parent, pid_t child);

// Whether the task belongs to the init of a pid namespace (pid 1 there), which the kernel shields
// from the signals it does not catch, SIGKILL and SIGSTOP aside.
bool inNamespaceInit(pid_t tid);

}  // namespace rwd
