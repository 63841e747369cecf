#include "sandbox/seccomp.h"

#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <vector>

#include "core/error.h"

namespace rwd::sandbox {
namespace {

constexpr unsigned kDenied[] = {
    // The network namespace has no interface up; no socket is made at all.
    SYS_socket,
    // The confined view is the mount namespace: nothing may change it or leave it.
    SYS_mount, SYS_umount2, SYS_pivot_root, SYS_chroot, SYS_unshare, SYS_setns, SYS_open_tree,
    SYS_move_mount, SYS_fsopen, SYS_fsconfig, SYS_fsmount, SYS_fspick, SYS_mount_setattr,
    SYS_open_by_handle_at, SYS_name_to_handle_at,
    // Kernel interfaces replay never needs.
    SYS_bpf, SYS_io_uring_setup, SYS_userfaultfd, SYS_keyctl, SYS_add_key, SYS_request_key,
    SYS_perf_event_open};

// x32 system call numbers carry this bit; they are another ABI.
constexpr unsigned kX32SyscallBit = 0x40000000;

sock_filter stmt(unsigned short code, unsigned k) { return BPF_STMT(code, k); }
sock_filter jump(unsigned short code, unsigned k, unsigned char jt, unsigned char jf) {
  return BPF_JUMP(code, k, jt, jf);
}

}  // namespace

void installSeccompFilter() {
  std::vector<sock_filter> f;
  f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)));
  f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0));
  f.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS));
  f.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)));
  f.push_back(jump(BPF_JMP | BPF_JGE | BPF_K, kX32SyscallBit, 0, 1));
  f.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS));
  for (unsigned nr : kDenied) {
    f.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1));
    f.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM));
  }
  f.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  sock_fprog prog{static_cast<unsigned short>(f.size()), f.data()};

  // no_new_privs is what lets a filter be installed without privilege; TSYNC sets it on the
  // other threads too.
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) failErrno("PR_SET_NO_NEW_PRIVS");
  long r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog);
  if (r < 0) failErrno("seccomp");
  if (r > 0)
    fail(ErrorCode::System, "seccomp: thread " + std::to_string(r) + " refused the filter");
}

}  // namespace rwd::sandbox
