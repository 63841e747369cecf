#include "core/syscall_table.h"

#include <sys/syscall.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <initializer_list>
#include <string>
#include <utility>

#include "core/error.h"
#include "core/i386_syscalls.h"

namespace rwd {
namespace {

constexpr long kMaxSyscall = 512;

// Syscalls newer than the C library's headers.
constexpr long kSysFaccessat2 = 439;
constexpr long kSysCloseRange = 436;
constexpr long kSysOpenat2 = 437;
constexpr long kSysEpollPwait2 = 441;
constexpr long kSysFchmodat2 = 452;
constexpr long kSysPidfdOpen = 434;
constexpr long kSysClone3 = 435;
constexpr long kSysOpenTree = 428, kSysMoveMount = 429, kSysFsopen = 430, kSysFsconfig = 431,
               kSysFsmount = 432, kSysFspick = 433, kSysMountSetattr = 442;

Output fixed(int arg, uint32_t bytes) { return Output{int8_t(arg), OutputSize::Fixed, bytes, -1}; }
Output result(int arg) { return Output{int8_t(arg), OutputSize::Result, 0, -1}; }
Output argValue(int arg, int sizeArg) {
  return Output{int8_t(arg), OutputSize::ArgValue, 0, int8_t(sizeArg)};
}
Output sockLen(int arg, int lenArg) {
  return Output{int8_t(arg), OutputSize::SockLen, 0, int8_t(lenArg)};
}
Output custom() { return Output{-1, OutputSize::Custom, 0, -1}; }

constexpr uint32_t kStat = 144, kStatx = 256, kStatfs = 120, kTimespec = 16, kRusage = 144,
                   kRlimit = 16, kItimerval = 32, kSiginfo = 128, kUtsname = 390, kSysinfo = 112,
                   kTms = 32, kItimerspec = 32, kTimex = 208, kMqAttr = 64, kUserDesc = 16;

struct TableBuilder {
  std::array<SyscallSpec, kMaxSyscall> specs{};

  void add(long nr, const char* name, int nargs, ReplayAction replay,
           std::initializer_list<Output> outputs = {}) {
    SyscallSpec& s = specs[nr];
    s.name = name;
    s.nargs = uint8_t(nargs);
    s.replay = replay;
    int i = 0;
    for (const Output& o : outputs) s.outputs[i++] = o;
  }
  void emulate(long nr, const char* name, int nargs, std::initializer_list<Output> outputs = {}) {
    add(nr, name, nargs, ReplayAction::Emulate, outputs);
  }
  // An emulated syscall that sends data; `echo`: replay echoes what went to stdout or stderr.
  void sends(long nr, const char* name, int nargs, Sent sent, bool echo,
             std::initializer_list<Output> outputs = {}, int fdArg = 0) {
    emulate(nr, name, nargs, outputs);
    specs[nr].sent = sent;
    specs[nr].echo = echo;
    specs[nr].fdArg = int8_t(fdArg);
  }
};

std::array<SyscallSpec, kMaxSyscall> buildTable() {
  using R = ReplayAction;
  TableBuilder t;
  // Files and descriptors.
  t.emulate(SYS_read, "read", 3, {result(1)});
  t.emulate(SYS_pread64, "pread64", 4, {result(1)});
  t.emulate(SYS_readv, "readv", 3, {custom()});
  t.emulate(SYS_preadv, "preadv", 4, {custom()});
  t.emulate(SYS_preadv2, "preadv2", 5, {custom()});
  t.sends(SYS_write, "write", 3, Sent::Buffer, true);
  t.sends(SYS_writev, "writev", 3, Sent::Iovec, true);
  t.sends(SYS_pwrite64, "pwrite64", 4, Sent::Buffer, false);
  t.sends(SYS_pwritev, "pwritev", 4, Sent::Iovec, false);
  t.sends(SYS_pwritev2, "pwritev2", 5, Sent::Iovec, false);
  t.emulate(SYS_open, "open", 3);
  t.emulate(SYS_openat, "openat", 4);
  t.emulate(kSysOpenat2, "openat2", 4);
  t.emulate(SYS_creat, "creat", 2);
  t.emulate(SYS_close, "close", 1);
  t.emulate(kSysCloseRange, "close_range", 3);
  t.emulate(SYS_lseek, "lseek", 3);
  t.emulate(SYS_dup, "dup", 1);
  t.emulate(SYS_dup2, "dup2", 2);
  t.emulate(SYS_dup3, "dup3", 3);
  t.emulate(SYS_pipe, "pipe", 1, {fixed(0, 8)});
  t.emulate(SYS_pipe2, "pipe2", 2, {fixed(0, 8)});
  t.emulate(SYS_fcntl, "fcntl", 3, {custom()});
  t.emulate(SYS_ioctl, "ioctl", 3, {custom()});
  t.emulate(SYS_flock, "flock", 2);
  t.emulate(SYS_fsync, "fsync", 1);
  t.emulate(SYS_fdatasync, "fdatasync", 1);
  t.emulate(SYS_sync, "sync", 0);
  t.emulate(SYS_syncfs, "syncfs", 1);
  t.emulate(SYS_sync_file_range, "sync_file_range", 4);
  t.emulate(SYS_fadvise64, "fadvise64", 4);
  t.emulate(SYS_fallocate, "fallocate", 4);
  t.emulate(SYS_truncate, "truncate", 2);
  t.emulate(SYS_ftruncate, "ftruncate", 2);
  t.emulate(SYS_stat, "stat", 2, {fixed(1, kStat)});
  t.emulate(SYS_lstat, "lstat", 2, {fixed(1, kStat)});
  t.emulate(SYS_fstat, "fstat", 2, {fixed(1, kStat)});
  t.emulate(SYS_newfstatat, "newfstatat", 4, {fixed(2, kStat)});
  t.emulate(SYS_statx, "statx", 5, {fixed(4, kStatx)});
  t.emulate(SYS_statfs, "statfs", 2, {fixed(1, kStatfs)});
  t.emulate(SYS_fstatfs, "fstatfs", 2, {fixed(1, kStatfs)});
  t.emulate(SYS_access, "access", 2);
  t.emulate(SYS_faccessat, "faccessat", 3);
  t.emulate(kSysFaccessat2, "faccessat2", 4);
  t.emulate(SYS_getdents, "getdents", 3, {result(1)});
  t.emulate(SYS_getdents64, "getdents64", 3, {result(1)});
  t.emulate(SYS_readlink, "readlink", 3, {result(1)});
  t.emulate(SYS_readlinkat, "readlinkat", 4, {result(2)});
  t.emulate(SYS_getcwd, "getcwd", 2, {result(0)});
  t.emulate(SYS_chdir, "chdir", 1);
  t.emulate(SYS_fchdir, "fchdir", 1);
  t.emulate(SYS_mkdir, "mkdir", 2);
  t.emulate(SYS_mkdirat, "mkdirat", 3);
  t.emulate(SYS_rmdir, "rmdir", 1);
  t.emulate(SYS_unlink, "unlink", 1);
  t.emulate(SYS_unlinkat, "unlinkat", 3);
  t.emulate(SYS_rename, "rename", 2);
  t.emulate(SYS_renameat, "renameat", 4);
  t.emulate(SYS_renameat2, "renameat2", 5);
  t.emulate(SYS_link, "link", 2);
  t.emulate(SYS_linkat, "linkat", 5);
  t.emulate(SYS_symlink, "symlink", 2);
  t.emulate(SYS_symlinkat, "symlinkat", 3);
  t.emulate(SYS_chmod, "chmod", 2);
  t.emulate(SYS_fchmod, "fchmod", 2);
  t.emulate(SYS_fchmodat, "fchmodat", 3);
  t.emulate(kSysFchmodat2, "fchmodat2", 4);
  t.emulate(SYS_chown, "chown", 3);
  t.emulate(SYS_fchown, "fchown", 3);
  t.emulate(SYS_lchown, "lchown", 3);
  t.emulate(SYS_fchownat, "fchownat", 5);
  t.emulate(SYS_utime, "utime", 2);
  t.emulate(SYS_utimes, "utimes", 2);
  t.emulate(SYS_utimensat, "utimensat", 4);
  t.emulate(SYS_futimesat, "futimesat", 3);
  t.emulate(SYS_umask, "umask", 1);
  t.emulate(SYS_getxattr, "getxattr", 4, {result(2)});
  t.emulate(SYS_lgetxattr, "lgetxattr", 4, {result(2)});
  t.emulate(SYS_fgetxattr, "fgetxattr", 4, {result(2)});
  t.emulate(SYS_listxattr, "listxattr", 3, {result(1)});
  t.emulate(SYS_llistxattr, "llistxattr", 3, {result(1)});
  t.emulate(SYS_flistxattr, "flistxattr", 3, {result(1)});
  t.emulate(SYS_setxattr, "setxattr", 5);
  t.emulate(SYS_lsetxattr, "lsetxattr", 5);
  t.emulate(SYS_fsetxattr, "fsetxattr", 5);
  t.emulate(SYS_removexattr, "removexattr", 2);
  t.emulate(SYS_lremovexattr, "lremovexattr", 2);
  t.emulate(SYS_fremovexattr, "fremovexattr", 2);
  t.emulate(SYS_mknod, "mknod", 3);
  t.emulate(SYS_mknodat, "mknodat", 4);
  t.emulate(SYS_open_tree, "open_tree", 3);
  t.sends(SYS_sendfile, "sendfile", 4, Sent::Copied, true, {fixed(2, 8)});
  t.sends(SYS_copy_file_range, "copy_file_range", 6, Sent::Copied, true, {fixed(1, 8), fixed(3, 8)},
          2);
  t.sends(SYS_splice, "splice", 6, Sent::Copied, true, {fixed(1, 8), fixed(3, 8)}, 2);
  t.emulate(SYS_memfd_create, "memfd_create", 2);
  // Descriptors whose reads are recorded like any other.
  t.emulate(SYS_inotify_init, "inotify_init", 0);
  t.emulate(SYS_inotify_init1, "inotify_init1", 1);
  t.emulate(SYS_inotify_add_watch, "inotify_add_watch", 3);
  t.emulate(SYS_inotify_rm_watch, "inotify_rm_watch", 2);
  t.emulate(SYS_eventfd, "eventfd", 1);
  t.emulate(SYS_eventfd2, "eventfd2", 2);
  t.emulate(SYS_fanotify_init, "fanotify_init", 2);
  t.emulate(SYS_fanotify_mark, "fanotify_mark", 5);
  t.emulate(SYS_perf_event_open, "perf_event_open", 5);
  t.emulate(SYS_bpf, "bpf", 3, {custom()});
  t.emulate(SYS_signalfd4, "signalfd4", 4);
  t.emulate(SYS_timerfd_create, "timerfd_create", 2);
  t.emulate(SYS_timerfd_settime, "timerfd_settime", 4, {fixed(3, kItimerspec)});
  t.emulate(SYS_timerfd_gettime, "timerfd_gettime", 2, {fixed(1, kItimerspec)});
  t.emulate(SYS_epoll_create, "epoll_create", 1);
  t.emulate(SYS_epoll_create1, "epoll_create1", 1);
  t.emulate(SYS_epoll_ctl, "epoll_ctl", 4);
  t.emulate(SYS_epoll_wait, "epoll_wait", 4, {custom()});
  t.emulate(SYS_epoll_pwait, "epoll_pwait", 6, {custom()});
  t.emulate(kSysEpollPwait2, "epoll_pwait2", 6, {custom()});
  t.emulate(SYS_poll, "poll", 3, {custom()});
  t.emulate(SYS_ppoll, "ppoll", 5, {custom()});
  t.emulate(SYS_select, "select", 5, {custom()});
  t.emulate(SYS_pselect6, "pselect6", 6, {custom()});
  // Sockets.
  t.emulate(SYS_socket, "socket", 3);
  t.emulate(SYS_socketpair, "socketpair", 4, {fixed(3, 8)});
  t.emulate(SYS_connect, "connect", 3);
  t.emulate(SYS_bind, "bind", 3);
  t.emulate(SYS_listen, "listen", 2);
  t.emulate(SYS_shutdown, "shutdown", 2);
  t.emulate(SYS_accept, "accept", 3, {sockLen(1, 2), fixed(2, 4)});
  t.emulate(SYS_accept4, "accept4", 4, {sockLen(1, 2), fixed(2, 4)});
  t.emulate(SYS_getsockname, "getsockname", 3, {sockLen(1, 2), fixed(2, 4)});
  t.emulate(SYS_getpeername, "getpeername", 3, {sockLen(1, 2), fixed(2, 4)});
  t.emulate(SYS_getsockopt, "getsockopt", 5, {sockLen(3, 4), fixed(4, 4)});
  t.emulate(SYS_setsockopt, "setsockopt", 5, {custom()});  // a netfilter table's counters
  t.sends(SYS_sendto, "sendto", 6, Sent::Buffer, true);
  t.sends(SYS_sendmsg, "sendmsg", 3, Sent::Message, true);
  // The kernel writes each message's msg_len.
  t.sends(SYS_sendmmsg, "sendmmsg", 4, Sent::Messages, true, {custom()});
  t.emulate(SYS_recvfrom, "recvfrom", 6, {result(1), sockLen(4, 5), fixed(5, 4)});
  t.emulate(SYS_recvmsg, "recvmsg", 3, {custom()});
  t.emulate(SYS_recvmmsg, "recvmmsg", 5, {custom()});
  // Time.
  t.emulate(SYS_clock_gettime, "clock_gettime", 2, {fixed(1, kTimespec)});
  t.emulate(SYS_clock_getres, "clock_getres", 2, {fixed(1, kTimespec)});
  t.emulate(SYS_clock_settime, "clock_settime", 2);
  t.emulate(SYS_adjtimex, "adjtimex", 1, {fixed(0, kTimex)});
  t.emulate(SYS_clock_adjtime, "clock_adjtime", 2, {fixed(1, kTimex)});
  t.emulate(SYS_gettimeofday, "gettimeofday", 2, {fixed(0, 16), fixed(1, 8)});
  t.emulate(SYS_time, "time", 1, {fixed(0, 8)});
  t.emulate(SYS_nanosleep, "nanosleep", 2, {fixed(1, kTimespec)});
  t.emulate(SYS_clock_nanosleep, "clock_nanosleep", 4, {fixed(3, kTimespec)});
  t.emulate(SYS_times, "times", 1, {fixed(0, kTms)});
  t.emulate(SYS_getitimer, "getitimer", 2, {fixed(1, kItimerval)});
  t.emulate(SYS_setitimer, "setitimer", 3, {fixed(2, kItimerval)});
  t.emulate(SYS_alarm, "alarm", 1);
  t.emulate(SYS_pause, "pause", 0);
  // POSIX timers: the kernel's timer id is an int. Their signals are recorded as they come.
  t.emulate(SYS_timer_create, "timer_create", 3, {fixed(2, 4)});
  t.emulate(SYS_timer_settime, "timer_settime", 4, {fixed(3, kItimerspec)});
  t.emulate(SYS_timer_gettime, "timer_gettime", 2, {fixed(1, kItimerspec)});
  t.emulate(SYS_timer_getoverrun, "timer_getoverrun", 1);
  t.emulate(SYS_timer_delete, "timer_delete", 1);
  // Process and system information.
  t.emulate(SYS_getpid, "getpid", 0);
  t.emulate(SYS_getppid, "getppid", 0);
  t.emulate(SYS_gettid, "gettid", 0);
  t.emulate(SYS_getuid, "getuid", 0);
  t.emulate(SYS_geteuid, "geteuid", 0);
  t.emulate(SYS_getgid, "getgid", 0);
  t.emulate(SYS_getegid, "getegid", 0);
  t.emulate(SYS_getresuid, "getresuid", 3, {fixed(0, 4), fixed(1, 4), fixed(2, 4)});
  t.emulate(SYS_getresgid, "getresgid", 3, {fixed(0, 4), fixed(1, 4), fixed(2, 4)});
  t.emulate(SYS_getgroups, "getgroups", 2, {custom()});
  t.emulate(SYS_getpgrp, "getpgrp", 0);
  t.emulate(SYS_getpgid, "getpgid", 1);
  t.emulate(SYS_getsid, "getsid", 1);
  t.emulate(SYS_setpgid, "setpgid", 2);
  t.emulate(SYS_setsid, "setsid", 0);
  t.emulate(SYS_setuid, "setuid", 1);
  t.emulate(SYS_setgid, "setgid", 1);
  t.emulate(SYS_setreuid, "setreuid", 2);
  t.emulate(SYS_setregid, "setregid", 2);
  t.emulate(SYS_setresuid, "setresuid", 3);
  t.emulate(SYS_setresgid, "setresgid", 3);
  t.emulate(SYS_setgroups, "setgroups", 2);
  t.emulate(SYS_capget, "capget", 2, {custom()});
  t.emulate(SYS_uname, "uname", 1, {fixed(0, kUtsname)});
  t.emulate(SYS_sysinfo, "sysinfo", 1, {fixed(0, kSysinfo)});
  t.emulate(SYS_getrusage, "getrusage", 2, {fixed(1, kRusage)});
  t.emulate(SYS_getrlimit, "getrlimit", 2, {fixed(1, kRlimit)});
  t.emulate(SYS_setrlimit, "setrlimit", 2);
  t.emulate(SYS_prlimit64, "prlimit64", 4, {fixed(3, kRlimit)});
  t.emulate(SYS_getpriority, "getpriority", 2);
  t.emulate(SYS_setpriority, "setpriority", 3);
  t.emulate(SYS_getcpu, "getcpu", 3, {fixed(0, 4), fixed(1, 4)});
  t.emulate(SYS_getrandom, "getrandom", 3, {result(0)});
  t.emulate(SYS_sched_yield, "sched_yield", 0);
  t.emulate(SYS_sched_getaffinity, "sched_getaffinity", 3, {result(2)});
  t.emulate(SYS_sched_setaffinity, "sched_setaffinity", 3);
  t.emulate(SYS_sched_getscheduler, "sched_getscheduler", 1);
  t.emulate(SYS_sched_getparam, "sched_getparam", 2, {fixed(1, 4)});
  t.emulate(SYS_sched_get_priority_max, "sched_get_priority_max", 1);
  t.emulate(SYS_sched_get_priority_min, "sched_get_priority_min", 1);
  t.emulate(SYS_sched_setparam, "sched_setparam", 2);
  t.emulate(SYS_sched_setscheduler, "sched_setscheduler", 3);
  t.emulate(SYS_sched_rr_get_interval, "sched_rr_get_interval", 2, {fixed(1, kTimespec)});
  t.emulate(SYS_sched_setattr, "sched_setattr", 3);
  t.emulate(SYS_sched_getattr, "sched_getattr", 4, {custom()});
  t.emulate(SYS_prctl, "prctl", 5, {custom()});
  t.emulate(SYS_personality, "personality", 1);
  // Replay marks a dying thread's robust mutexes itself (replay/robust_futexes.h).
  t.emulate(SYS_set_robust_list, "set_robust_list", 2);
  t.emulate(SYS_get_robust_list, "get_robust_list", 3, {fixed(1, 8), fixed(2, 8)});
  // FUTEX_WAKE_OP stores into its second word; the PI operations store the owner's tid.
  t.emulate(SYS_futex, "futex", 3, {custom()});
  t.emulate(SYS_kill, "kill", 2);
  t.emulate(SYS_tkill, "tkill", 2);
  t.emulate(SYS_tgkill, "tgkill", 3);
  t.emulate(SYS_rt_sigqueueinfo, "rt_sigqueueinfo", 3);
  t.emulate(SYS_rt_tgsigqueueinfo, "rt_tgsigqueueinfo", 4);
  t.emulate(SYS_pidfd_send_signal, "pidfd_send_signal", 4);
  // Replay runs it in place when its mask let through a signal the program's own blocks.
  t.emulate(SYS_rt_sigsuspend, "rt_sigsuspend", 2);
  t.emulate(SYS_wait4, "wait4", 4, {fixed(1, 4), fixed(3, kRusage)});
  t.emulate(SYS_waitid, "waitid", 5, {fixed(2, kSiginfo), fixed(4, kRusage)});
  t.emulate(SYS_rt_sigpending, "rt_sigpending", 2, {argValue(0, 1)});
  t.emulate(SYS_rt_sigtimedwait, "rt_sigtimedwait", 4, {fixed(1, kSiginfo)});
  t.emulate(SYS_membarrier, "membarrier", 3);
  t.emulate(SYS_msync, "msync", 3);
  t.emulate(SYS_mincore, "mincore", 3, {custom()});
  t.emulate(SYS_ioprio_get, "ioprio_get", 2);
  t.emulate(SYS_ioprio_set, "ioprio_set", 3);
  t.emulate(kSysPidfdOpen, "pidfd_open", 2);
  t.emulate(SYS_pidfd_getfd, "pidfd_getfd", 3);
  t.emulate(SYS_kcmp, "kcmp", 5);
  t.emulate(SYS_process_vm_readv, "process_vm_readv", 6, {custom()});
  // Into the caller's own memory only (other processes' memory is not the event's task's).
  t.emulate(SYS_process_vm_writev, "process_vm_writev", 6, {custom()});
  // NUMA policy: only get_mempolicy and move_pages tell it, and they are recorded.
  t.emulate(SYS_mbind, "mbind", 6);
  t.emulate(SYS_set_mempolicy, "set_mempolicy", 3);
  t.emulate(SYS_get_mempolicy, "get_mempolicy", 5, {custom()});
  // Port access: replay, a sandbox, never grants it; an in or out after it faults in replay
  // and diverges.
  t.emulate(SYS_iopl, "iopl", 1);
  t.emulate(SYS_ioperm, "ioperm", 3);
  t.emulate(SYS_acct, "acct", 1);
  t.emulate(SYS_syslog, "syslog", 3, {custom()});
  t.emulate(SYS_sysfs, "sysfs", 3, {custom()});
  t.emulate(SYS__sysctl, "_sysctl", 1, {custom()});
  t.emulate(SYS_quotactl, "quotactl", 4, {custom()});
  t.emulate(SYS_add_key, "add_key", 5);
  t.emulate(SYS_request_key, "request_key", 4);
  t.emulate(SYS_keyctl, "keyctl", 5, {custom()});
  t.emulate(SYS_landlock_create_ruleset, "landlock_create_ruleset", 3);
  t.emulate(SYS_landlock_add_rule, "landlock_add_rule", 4);
  t.emulate(SYS_landlock_restrict_self, "landlock_restrict_self", 2);
  // POSIX message queues are descriptors; a message sent is data leaving the process.
  t.emulate(SYS_mq_open, "mq_open", 4);
  t.emulate(SYS_mq_unlink, "mq_unlink", 1);
  t.sends(SYS_mq_timedsend, "mq_timedsend", 5, Sent::Sized, false);
  t.emulate(SYS_mq_timedreceive, "mq_timedreceive", 5, {result(1), fixed(3, 4)});
  t.emulate(SYS_mq_notify, "mq_notify", 2);
  t.emulate(SYS_mq_getsetattr, "mq_getsetattr", 3, {fixed(2, kMqAttr)});
  // SysV semaphores and message queues.
  t.emulate(SYS_semget, "semget", 3);
  t.emulate(SYS_semop, "semop", 3);
  t.emulate(SYS_semtimedop, "semtimedop", 4);
  t.emulate(SYS_semctl, "semctl", 4, {custom()});
  t.emulate(SYS_msgget, "msgget", 2);
  t.sends(SYS_msgsnd, "msgsnd", 4, Sent::Sized, false);
  t.emulate(SYS_msgrcv, "msgrcv", 5, {custom()});
  t.emulate(SYS_msgctl, "msgctl", 3, {custom()});
  t.emulate(SYS_restart_syscall, "restart_syscall", 0);
  // Namespaces, mounts, identity and filters: they act on the kernel's view of the recorded
  // tree, which replay does not need (every result is in the recording), so it emulates them.
  // A seccomp filter the program installs is classified by the recorder as each syscall enters
  // (record/seccomp_filter.h): replay skips what it stopped.
  t.emulate(SYS_unshare, "unshare", 1);
  t.emulate(SYS_setns, "setns", 2);
  t.emulate(SYS_mount, "mount", 5);
  t.emulate(SYS_umount2, "umount2", 2);
  t.emulate(SYS_pivot_root, "pivot_root", 2);
  t.emulate(SYS_chroot, "chroot", 1);
  t.emulate(kSysOpenTree, "open_tree", 3);
  t.emulate(kSysMoveMount, "move_mount", 5);
  t.emulate(kSysFsopen, "fsopen", 2);
  t.emulate(kSysFsconfig, "fsconfig", 5);
  t.emulate(kSysFsmount, "fsmount", 3);
  t.emulate(kSysFspick, "fspick", 3);
  t.emulate(kSysMountSetattr, "mount_setattr", 4);
  t.emulate(SYS_sethostname, "sethostname", 2);
  t.emulate(SYS_setdomainname, "setdomainname", 2);
  t.emulate(SYS_capset, "capset", 2);
  t.emulate(SYS_setfsuid, "setfsuid", 1);
  t.emulate(SYS_setfsgid, "setfsgid", 1);
  t.emulate(SYS_seccomp, "seccomp", 3, {custom()});
  // Address space and task state: executed again in replay.
  t.add(SYS_mmap, "mmap", 6, R::Mmap);
  t.add(SYS_munmap, "munmap", 2, R::Execute);
  t.add(SYS_mprotect, "mprotect", 3, R::Execute);
  t.add(SYS_madvise, "madvise", 3, R::Execute);
  // Locked pages change what madvise and mremap do to them.
  t.add(SYS_mlock, "mlock", 2, R::Execute);
  t.add(SYS_munlock, "munlock", 2, R::Execute);
  t.add(SYS_mlockall, "mlockall", 1, R::Execute);
  t.add(SYS_munlockall, "munlockall", 0, R::Execute);
  t.add(SYS_mremap, "mremap", 4, R::Mremap);
  t.add(SYS_brk, "brk", 1, R::Brk);
  t.add(SYS_arch_prctl, "arch_prctl", 2, R::Execute);
  // The LDT decides what segment loads and lsl see: replay installs the same entries.
  t.add(SYS_modify_ldt, "modify_ldt", 3, R::Execute);
  // Where the kernel clears the tid (and wakes a futex) when the thread ends.
  t.add(SYS_set_tid_address, "set_tid_address", 1, R::Execute);
  t.add(SYS_pkey_alloc, "pkey_alloc", 2, R::Execute);
  t.add(SYS_pkey_free, "pkey_free", 1, R::Execute);
  t.add(SYS_pkey_mprotect, "pkey_mprotect", 4, R::Execute);
  t.add(SYS_rt_sigaction, "rt_sigaction", 4, R::Execute);
  t.add(SYS_rt_sigprocmask, "rt_sigprocmask", 4, R::Execute);
  t.add(SYS_sigaltstack, "sigaltstack", 2, R::Execute);
  t.add(SYS_rt_sigreturn, "rt_sigreturn", 0, R::InPlace);
  t.add(SYS_exit, "exit", 1, R::InPlace);
  t.add(SYS_exit_group, "exit_group", 1, R::InPlace);
  t.add(SYS_execve, "execve", 3, R::Execve);
  t.add(SYS_execveat, "execveat", 5, R::Execve);
  t.add(SYS_rseq, "rseq", 4, R::Refused);
  // New processes (threads are refused by the recorder for now).
  t.add(SYS_clone, "clone", 5, R::Fork);
  t.add(kSysClone3, "clone3", 2, R::Fork);
  t.add(SYS_fork, "fork", 0, R::Fork);
  t.add(SYS_vfork, "vfork", 0, R::Fork);
  // The program's ptrace is emulated by the recorder (record/emulated_ptrace.h): replay writes
  // what its requests returned.
  t.emulate(SYS_ptrace, "ptrace", 4, {custom()});
  // SysV shared memory: segments are emulated files too; attaching maps one, detaching unmaps it.
  t.emulate(SYS_shmget, "shmget", 3);
  t.emulate(SYS_shmctl, "shmctl", 3, {custom()});
  t.add(SYS_shmat, "shmat", 3, R::Mmap);
  t.add(SYS_shmdt, "shmdt", 1, R::Mmap);
  // What the preload library may make from the trampoline (docs/syscall-buffer.md): those that
  // cannot wait for another process. A record holds one output, the table's first (the library
  // passes null for the others).
  for (long nr : {SYS_read, SYS_pread64, SYS_lseek, SYS_fstat, SYS_newfstatat, SYS_access,
                  SYS_openat, SYS_close, SYS_clock_gettime, SYS_gettimeofday, SYS_time, SYS_getpid,
                  SYS_getppid, SYS_gettid, SYS_getuid, SYS_geteuid, SYS_getgid, SYS_getegid}) {
    t.specs[nr].buffered = true;
  }
  return t.specs;
}

// The highest number x86-64 assigns (file_setattr, Linux 6.17). A later kernel's newer syscalls
// get ENOSYS, as on an older kernel.
constexpr long kLastSyscall = 469;

bool absentFromKernel(long nr) {
  if (nr < 0 || nr > kLastSyscall) return true;
  if (nr >= 335 && nr < 424) return true;  // x86-64 skips these: the 32-bit ABIs' own numbers
  switch (nr) {
    case 174:  // create_module
    case 177:  // get_kernel_syms
    case 178:  // query_module
    case 180:  // nfsservctl
    case 181:  // getpmsg
    case 182:  // putpmsg
    case 183:  // afs_syscall
    case 184:  // tuxcall
    case 185:  // security
    case 214:  // epoll_ctl_old
    case 215:  // epoll_wait_old
    case 236:  // vserver
    case 205:  // set_thread_area, and
    case 211:  // get_thread_area: listed for x86-64 without an implementation (i386 has them)
      return true;
  }
  return false;
}

const std::array<SyscallSpec, kMaxSyscall>& table() {
  static const std::array<SyscallSpec, kMaxSyscall> specs = buildTable();
  return specs;
}

// The i386 syscalls recorded, each with the x86-64 syscall whose arguments mean the same at 32
// bits (descriptors, pointers and sizes zero-extended; the structures they point to laid out
// alike): it is recorded and replayed as that one is. Every other i386 number is refused by name.
// (set_thread_area and get_thread_area are i386's own: see compatTable.)
constexpr std::pair<const char*, long> kCompatSyscalls[] = {
    {"exit", SYS_exit},
    {"read", SYS_read},
    {"write", SYS_write},
    {"close", SYS_close},
    {"getpid", SYS_getpid},
    {"getppid", SYS_getppid},
    {"gettid", SYS_gettid},
    {"getuid32", SYS_getuid},
    {"getgid32", SYS_getgid},
    {"geteuid32", SYS_geteuid},
    {"getegid32", SYS_getegid},
    {"uname", SYS_uname},
    {"sched_yield", SYS_sched_yield},
    {"exit_group", SYS_exit_group},
};

struct CompatTable {
  std::array<SyscallSpec, kCompatCount> specs{};
  std::array<long, kCompatCount> native{};
  std::array<std::string, kCompatCount> names;  // "i386 write": never mistaken for x86-64's

  // The entry of the i386 syscall `name`, which is (or stands for, below) x86-64's `nr`.
  SyscallSpec& add(const char* name, long nr) {
    auto it = std::find_if(std::begin(kI386Syscalls), std::end(kI386Syscalls),
                           [&](const I386Syscall& s) { return std::string(s.name) == name; });
    if (it == std::end(kI386Syscalls) || it->nr >= kCompatCount) {
      fail(ErrorCode::System, std::string("the i386 table has no ") + name);
    }
    native[it->nr] = nr;
    names[it->nr] = std::string("i386 ") + name;
    specs[it->nr] = table()[nr];
    specs[it->nr].name = names[it->nr].c_str();
    return specs[it->nr];
  }
};

const CompatTable& compatTable() {
  static const CompatTable compat = [] {
    CompatTable c;
    for (const auto& [name, nr] : kCompatSyscalls) {
      if (!table()[nr].name)
        fail(ErrorCode::System, std::string("the x86-64 table has no ") + name);
      c.add(name, nr);
    }
    // The TLS entries of the GDT, which 32-bit code loads into %gs: x86-64 has no syscall for
    // them (its numbers for them answer ENOSYS). Both take a struct user_desc, and the kernel
    // writes back the entry it chose; replay fills in the same one
    // (ReplaySession::applyThreadArea).
    for (const auto& [name, nr] :
         {std::pair<const char*, long>{"set_thread_area", SYS_set_thread_area},
          {"get_thread_area", SYS_get_thread_area}}) {
      SyscallSpec& spec = c.add(name, nr);
      spec.nargs = 1;
      spec.replay = ReplayAction::Emulate;
      spec.outputs[0] = fixed(0, kUserDesc);
    }
    return c;
  }();
  return compat;
}

}  // namespace

long traceSyscallNumber(const Regs& r, bool compat) {
  long nr = syscallNumber(r.orig_rax);
  return compat ? kCompatBase + std::clamp<long>(nr, 0, kCompatCount - 1) : nr;
}

void syscallArguments(const Regs& r, bool compat, uint64_t* args) {
  const uint64_t regs[6] = {compat ? r.rbx : r.rdi, compat ? r.rcx : r.rsi, r.rdx,
                            compat ? r.rsi : r.r10, compat ? r.rdi : r.r8,  compat ? r.rbp : r.r9};
  for (int i = 0; i < 6; i++) args[i] = compat ? uint32_t(regs[i]) : regs[i];
}

bool recordableCompatSyscall(const Task& task) {
  Regs r = task.regs();
  long nr = syscallNumber(r.orig_rax);
  uint8_t insn[2] = {};
  return nr >= 0 && nr < kCompatCount && compatTable().specs[nr].name &&
         task.tryRead(r.rip - 2, insn, sizeof insn) && insn[0] == 0xcd && insn[1] == 0x80;
}

long nativeSyscall(long nr) {
  return isCompatNumber(nr) ? compatTable().native[nr - kCompatBase] : nr;
}

const SyscallSpec* lookupSyscall(long nr) {
  static const SyscallSpec absent{"no_such_syscall", 0, ReplayAction::Refused, {}};
  if (isCompatNumber(nr)) {
    const SyscallSpec& s = compatTable().specs[nr - kCompatBase];
    return s.name ? &s : nullptr;
  }
  if (absentFromKernel(nr)) return &absent;
  const SyscallSpec& s = table()[nr];
  return s.name ? &s : nullptr;
}

const char* syscallName(long nr) {
  const SyscallSpec* s = lookupSyscall(nr);
  if (s && (isCompatNumber(nr) || !absentFromKernel(nr))) return s->name;
  static thread_local char buf[32];
  snprintf(buf, sizeof buf, "syscall_%ld", nr);
  return buf;
}

std::string describeCompatSyscall(const Task& task) {
  Regs r = task.regs();
  long nr = syscallNumber(r.orig_rax);
  const I386Syscall* end = std::end(kI386Syscalls);
  const I386Syscall* it = std::lower_bound(std::begin(kI386Syscalls), end, nr,
                                           [](const I386Syscall& s, long n) { return s.nr < n; });
  std::string name = it != end && it->nr == nr ? it->name : "number";
  uint8_t insn[2] = {};
  task.tryRead(r.rip - 2, insn, sizeof insn);
  const char* via = insn[0] == 0xcd && insn[1] == 0x80   ? "int $0x80"
                    : insn[0] == 0x0f && insn[1] == 0x34 ? "sysenter"
                                                         : "a 32-bit entry";
  return "32-bit syscall " + name + " (" + std::to_string(nr) + ") via " + via;
}

}  // namespace rwd
