#include "record/pid_namespace.h"

#include <string>
#include <vector>

#include "core/proc_files.h"

namespace rwd {
namespace {

// A task's pid (`key` NSpid) or its process's (NStgid) in each pid namespace it is in, from
// the recorder's (outermost) to its own.
std::vector<pid_t> namespacePids(pid_t tid, const std::string& key = "NSpid") {
  std::vector<pid_t> pids;
  for (int64_t p : procStatus(tid).numbers(key)) pids.push_back(pid_t(p));
  return pids;
}
}  // namespace

ChildPids childPids(pid_t parent, pid_t child) {
  std::vector<pid_t> own = namespacePids(child), parents = namespacePids(parent);
  ChildPids ids{child, child};
  // The child is in its parent's namespace or one below it: the parent's level names it there.
  if (!parents.empty() && own.size() >= parents.size()) {
    ids.seenByParent = own[parents.size() - 1];
    ids.seenByItself = own.back();
  }
  return ids;
}

bool inNamespaceInit(pid_t tid) {
  std::vector<pid_t> pids = namespacePids(tid, "NStgid");
  return pids.size() > 1 && pids.back() == 1;
}

}  // namespace rwd
