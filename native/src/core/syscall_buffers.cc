#include "core/syscall_buffers.h"

#include <asm/prctl.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/capability.h>
#include <linux/dqblk_xfs.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <linux/futex.h>
#include <linux/if.h>
#include <linux/if_bridge.h>
#include <linux/if_tun.h>
#include <linux/kd.h>
#include <linux/keyctl.h>
#include <linux/netfilter_ipv4/ip_tables.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <linux/perf_event.h>
#include <linux/quota.h>
#include <linux/random.h>
#include <linux/seccomp.h>
#include <linux/serial.h>
#include <linux/sockios.h>
#include <linux/vt.h>
#include <sys/ioctl.h>
#include <sys/msg.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "core/error.h"
#include "core/proc_files.h"
#include "core/syscall_restart.h"

namespace rwd {
namespace {

// The kernel's struct termios, which TCGETS fills (smaller than the C library's).
constexpr uint64_t kKernelTermiosSize = 36;
// syslog's actions that copy the kernel log into the buffer (SYSLOG_ACTION_READ*).
constexpr uint64_t kSyslogRead = 2, kSyslogReadAll = 3, kSyslogReadClear = 4;
// The flag of a SysV IPC command asking for the 64-bit structures (linux/ipc.h): on x86-64 they
// are the only ones.
constexpr int kIpc64 = 0x100;

void capture(const Task& task, uint64_t addr, uint64_t len, std::vector<MemoryWrite>& out) {
  if (!addr || !len) return;
  MemoryWrite w{addr, std::vector<uint8_t>(len)};
  // A buffer the kernel could not fully write either: keep what is readable.
  if (task.tryRead(addr, w.data.data(), len)) out.push_back(std::move(w));
}

// Scatters `total` bytes over an iovec array, as readv fills it.
void captureIovecs(const Task& task, uint64_t iovAddr, uint64_t count, uint64_t total,
                   std::vector<MemoryWrite>& out) {
  count = std::min<uint64_t>(count, 1024);
  std::vector<iovec> iov(count);
  if (!count || !task.tryRead(iovAddr, iov.data(), count * sizeof(iovec))) return;
  for (const iovec& v : iov) {
    if (!total) break;
    uint64_t n = std::min<uint64_t>(total, v.iov_len);
    capture(task, uint64_t(v.iov_base), n, out);
    total -= n;
  }
}

[[noreturn]] void unsupportedRequest(const char* syscall, uint64_t request) {
  char buf[128];
  snprintf(buf, sizeof buf, "the program used %s request 0x%llx, which rewind cannot record yet",
           syscall, (unsigned long long)request);
  fail(ErrorCode::Unsupported, buf);
}

// The ioctl requests recording knows, and how many bytes each writes at its argument (0: none).
struct IoctlRule {
  uint32_t request;
  uint32_t bytes;
};

constexpr IoctlRule kIoctls[] = {
    // Terminals.
    {TCGETS, kKernelTermiosSize},
    {TCSETS, 0},
    {TCSETSW, 0},
    {TCSETSF, 0},
    {TCXONC, 0},
    {TCFLSH, 0},
    {TIOCGWINSZ, sizeof(struct winsize)},
    {TIOCSWINSZ, 0},
    {TIOCGPGRP, sizeof(int)},
    {TIOCSPGRP, 0},
    {TIOCGSID, sizeof(int)},
    {TIOCOUTQ, sizeof(int)},
    {TIOCSCTTY, 0},
    {TIOCNOTTY, 0},
    {TIOCSTI, 0},
    {TIOCEXCL, 0},
    {TIOCNXCL, 0},
    {TIOCGEXCL, sizeof(int)},
    {TIOCGETD, sizeof(int)},
    {TIOCSETD, 0},
    {TIOCLINUX, 1},  // the subcode byte; the queries answer in it
    {TIOCMGET, sizeof(int)},
    {TIOCMSET, 0},
    {TIOCMBIS, 0},
    {TIOCMBIC, 0},
    {TIOCGICOUNT, sizeof(struct serial_icounter_struct)},
    {TIOCSERGETLSR, sizeof(int)},
    // Pseudo-terminal masters.
    {TIOCGPTN, sizeof(unsigned)},
    {TIOCSPTLCK, 0},
    {TIOCGPTLCK, sizeof(int)},
    {TIOCPKT, 0},
    {TIOCGPKT, sizeof(int)},
    {TIOCGPTPEER, 0},  // returns a descriptor
    // Virtual consoles.
    {VT_OPENQRY, sizeof(int)},
    {VT_GETSTATE, sizeof(struct vt_stat)},
    {KDGKBMODE, sizeof(int)},
    // Any descriptor.
    {FIONREAD, sizeof(int)},
    {FIONBIO, 0},
    {FIOCLEX, 0},
    {FIONCLEX, 0},
    {FIOASYNC, 0},
    // Files: the kernel writes an int for these two, whatever their encoded size says.
    {FS_IOC_GETVERSION, sizeof(int)},
    {FS_IOC_GETFLAGS, sizeof(int)},
    {FS_IOC_FSGETXATTR, sizeof(struct fsxattr)},
    {RNDGETENTCNT, sizeof(int)},
    // Performance counters.
    {PERF_EVENT_IOC_ENABLE, 0},
    {PERF_EVENT_IOC_DISABLE, 0},
    {PERF_EVENT_IOC_RESET, 0},
    {PERF_EVENT_IOC_REFRESH, 0},
    {PERF_EVENT_IOC_PERIOD, 0},
    {PERF_EVENT_IOC_ID, sizeof(uint64_t)},
    // TUN/TAP devices. TUNSETIFF and TUNGETIFF write a whole ifreq back, whatever their encoded
    // size says; TUNGETFILTER the attached sock_fprog.
    {TUNGETFEATURES, sizeof(unsigned)},
    {TUNSETIFF, sizeof(struct ifreq)},
    {TUNGETIFF, sizeof(struct ifreq)},
    {TUNGETSNDBUF, sizeof(int)},
    {TUNGETVNETHDRSZ, sizeof(int)},
    {TUNGETVNETLE, sizeof(int)},
    {TUNGETVNETBE, sizeof(int)},
    {TUNGETFILTER, sizeof(struct sock_fprog)},
    {TUNSETNOCSUM, 0},
    {TUNSETDEBUG, 0},
    {TUNSETPERSIST, 0},
    {TUNSETOWNER, 0},
    {TUNSETGROUP, 0},
    {TUNSETLINK, 0},
    {TUNSETOFFLOAD, 0},
    {TUNSETTXFILTER, 0},
    {TUNSETSNDBUF, 0},
    {TUNATTACHFILTER, 0},
    {TUNDETACHFILTER, 0},
    {TUNSETVNETHDRSZ, 0},
    {TUNSETQUEUE, 0},
    {TUNSETIFINDEX, 0},
    {TUNSETVNETLE, 0},
    {TUNSETVNETBE, 0},
    // Network interfaces, on any socket: the queries write the whole ifreq back (the kernel
    // copies its own out once the request succeeded), the settings only read it.
    {SIOCGIFNAME, sizeof(struct ifreq)},
    {SIOCGIFINDEX, sizeof(struct ifreq)},
    {SIOCGIFFLAGS, sizeof(struct ifreq)},
    {SIOCGIFADDR, sizeof(struct ifreq)},
    {SIOCGIFDSTADDR, sizeof(struct ifreq)},
    {SIOCGIFBRDADDR, sizeof(struct ifreq)},
    {SIOCGIFNETMASK, sizeof(struct ifreq)},
    {SIOCGIFMETRIC, sizeof(struct ifreq)},
    {SIOCGIFMTU, sizeof(struct ifreq)},
    {SIOCGIFHWADDR, sizeof(struct ifreq)},
    {SIOCGIFMAP, sizeof(struct ifreq)},
    {SIOCGIFTXQLEN, sizeof(struct ifreq)},
    {SIOCSIFNAME, sizeof(struct ifreq)},  // among the requests that "return a value"
    {SIOCSIFFLAGS, 0},
    {SIOCSIFADDR, 0},
    {SIOCSIFDSTADDR, 0},
    {SIOCSIFBRDADDR, 0},
    {SIOCSIFNETMASK, 0},
    {SIOCSIFMETRIC, 0},
    {SIOCSIFMTU, 0},
    {SIOCSIFHWADDR, 0},
    {SIOCSIFHWBROADCAST, 0},
    {SIOCSIFMAP, 0},
    {SIOCSIFTXQLEN, 0},
    {SIOCADDMULTI, 0},
    {SIOCDELMULTI, 0},
    {SIOCADDRT, 0},  // a struct rtentry, read
    {SIOCDELRT, 0},
    // Bridges: a name (SIOCBRADDBR), an ifreq naming the bridge and the port's index.
    {SIOCBRADDBR, 0},
    {SIOCBRDELBR, 0},
    {SIOCBRADDIF, 0},
    {SIOCBRDELIF, 0},
};

// The old bridge interface (SIOCGIFBR and SIOCSIFBR alike): the argument points to three longs,
// a BRCTL_* command and its two arguments. Only BRCTL_GET_BRIDGES writes: as many interface
// indices at args[1] as it returns.
void captureOldBridge(const Task& task, uint64_t request, uint64_t arg, int64_t result,
                      std::vector<MemoryWrite>& out) {
  uint64_t cmd[3] = {};
  if (!task.tryRead(arg, cmd, sizeof cmd)) return;
  switch (cmd[0]) {
    case BRCTL_GET_BRIDGES:
      return capture(task, cmd[1], uint64_t(result) * sizeof(int), out);
    case BRCTL_GET_VERSION:
    case BRCTL_ADD_BRIDGE:
    case BRCTL_DEL_BRIDGE:
      return;
  }
  unsupportedRequest(request == SIOCGIFBR ? "ioctl SIOCGIFBR" : "ioctl SIOCSIFBR", cmd[0]);
}

void captureIoctl(const Task& task, const uint64_t* args, int64_t result,
                  std::vector<MemoryWrite>& out) {
  uint64_t request = args[1] & 0xffffffff, arg = args[2];
  if (request == SIOCGIFBR || request == SIOCSIFBR) {
    return captureOldBridge(task, request, arg, result, out);
  }
  if (request == FS_IOC_FIEMAP) {
    // The header, then as many extents as the kernel mapped (at most as many as asked for).
    fiemap head;
    if (!task.tryRead(arg, &head, sizeof head)) return;
    uint64_t extents = std::min(head.fm_mapped_extents, head.fm_extent_count);
    return capture(task, arg, sizeof head + extents * sizeof(fiemap_extent), out);
  }
  for (const IoctlRule& rule : kIoctls) {
    if (rule.request == request) return capture(task, arg, rule.bytes, out);
  }
  unsupportedRequest("ioctl", request);
}

void captureFcntl(const Task& task, const uint64_t* args, std::vector<MemoryWrite>& out) {
  switch (int(args[1])) {
    case F_GETLK:
    case F_OFD_GETLK:
      capture(task, args[2], sizeof(struct flock), out);
      return;
    case F_GETOWN_EX:
      capture(task, args[2], sizeof(struct f_owner_ex), out);
      return;
    case F_GET_RW_HINT:
    case F_GET_FILE_RW_HINT:
      capture(task, args[2], sizeof(uint64_t), out);
      return;
  }
}

void capturePrctl(const Task& task, const uint64_t* args, std::vector<MemoryWrite>& out) {
  switch (int(args[0])) {
    case PR_GET_NAME:
      return capture(task, args[1], 16, out);
    case PR_GET_PDEATHSIG:
    case PR_GET_TSC:
    case PR_GET_CHILD_SUBREAPER:
    case PR_GET_TID_ADDRESS:
      return capture(task, args[1], args[0] == PR_GET_TID_ADDRESS ? 8 : 4, out);
    case PR_SET_MM:
      if (args[1] == PR_SET_MM_MAP_SIZE) capture(task, args[2], sizeof(unsigned), out);
      return;
  }
}

// The futex words the kernel itself stores into.
void captureFutex(const Task& task, const uint64_t* args, std::vector<MemoryWrite>& out) {
  switch (int(args[1]) & FUTEX_CMD_MASK) {
    case FUTEX_WAKE_OP:
      return capture(task, args[4], sizeof(uint32_t), out);
    case FUTEX_LOCK_PI:
    case FUTEX_LOCK_PI2:
    case FUTEX_TRYLOCK_PI:
    case FUTEX_UNLOCK_PI:
      return capture(task, args[0], sizeof(uint32_t), out);
    case FUTEX_WAIT_REQUEUE_PI:  // woken owning the PI futex it was requeued to
    case FUTEX_CMP_REQUEUE_PI:
      capture(task, args[0], sizeof(uint32_t), out);
      return capture(task, args[4], sizeof(uint32_t), out);
  }
}

void captureShmctl(const Task& task, const uint64_t* args, std::vector<MemoryWrite>& out) {
  switch (int(args[1]) & ~kIpc64) {
    case IPC_STAT:
    case SHM_STAT:
    case SHM_STAT_ANY:
      return capture(task, args[2], sizeof(struct shmid_ds), out);
    case IPC_INFO:
      return capture(task, args[2], sizeof(struct shminfo), out);
    case SHM_INFO:
      return capture(task, args[2], sizeof(struct shm_info), out);
  }
}

// Replacing a netfilter table (iptables, ip6tables) gives back the old table's counters, where
// the ipt_replace (or ip6t_replace, the same header) asks for them. (The levels SOL_IP and
// SOL_IPV6 are the protocol numbers.)
void captureSetsockopt(const Task& task, const uint64_t* args, std::vector<MemoryWrite>& out) {
  const bool ipv4 = args[1] == IPPROTO_IP && args[2] == IPT_SO_SET_REPLACE;
  const bool ipv6 = args[1] == IPPROTO_IPV6 && args[2] == IP6T_SO_SET_REPLACE;
  ipt_replace replace;
  if ((!ipv4 && !ipv6) || args[4] < sizeof replace ||
      !task.tryRead(args[3], &replace, sizeof replace)) {
    return;
  }
  capture(task, uint64_t(replace.counters),
          std::min<uint64_t>(replace.num_counters, 1 << 20) * sizeof(xt_counters), out);
}

// A message received into the msghdr at `addr`, `bytes` of data: the kernel updates its lengths
// and flags, and fills the name, the control data and the iovecs.
void captureReceived(const Task& task, uint64_t addr, uint64_t bytes,
                     std::vector<MemoryWrite>& out) {
  msghdr msg;
  if (!task.tryRead(addr, &msg, sizeof msg)) return;
  capture(task, addr, sizeof msg, out);
  capture(task, uint64_t(msg.msg_name), msg.msg_namelen, out);
  capture(task, uint64_t(msg.msg_control), msg.msg_controllen, out);
  captureIovecs(task, uint64_t(msg.msg_iov), msg.msg_iovlen, bytes, out);
}

void captureRecvmmsg(const Task& task, const uint64_t* args, int64_t result,
                     std::vector<MemoryWrite>& out) {
  for (uint64_t i = 0; i < std::min<uint64_t>(uint64_t(result), 1024); i++) {
    uint64_t addr = args[1] + i * sizeof(mmsghdr);
    mmsghdr m;
    if (!task.tryRead(addr, &m, sizeof m)) break;
    captureReceived(task, addr, m.msg_len, out);
    capture(task, addr + offsetof(mmsghdr, msg_len), sizeof m.msg_len, out);
  }
  capture(task, args[4], sizeof(timespec), out);  // the time left
}

// The task's process id as the task sees it (the last NStgid: its own pid namespace's).
long ownPid(const Task& task) {
  std::vector<int64_t> pids = procStatus(task.tid()).numbers("NStgid");
  return pids.empty() ? -1 : long(pids.back());
}

// process_vm_writev: what the kernel wrote into the caller's own memory. Another process's memory
// is not the event's task's to write in replay.
void captureVmWrite(const Task& task, const uint64_t* args, int64_t result,
                    std::vector<MemoryWrite>& out) {
  if (long(int32_t(args[0])) != ownPid(task)) {
    fail(ErrorCode::Unsupported,
         "the program wrote into another process's memory with process_vm_writev, which rewind "
         "cannot replay yet");
  }
  captureIovecs(task, args[3], args[4], uint64_t(result), out);
}

// bpf's attribute block as the kernel sees it: the program's first `size` bytes, zeros after.
struct BpfAttr {
  uint8_t bytes[256] = {};
  uint64_t size = 0;

  BpfAttr(const Task& task, uint64_t addr, uint64_t size_) : size(std::min<uint64_t>(size_, 256)) {
    task.tryRead(addr, bytes, size);
  }
  template <typename T>
  T at(size_t offset) const {
    T v;
    memcpy(&v, bytes + offset, sizeof v);
    return v;
  }
  bool covers(size_t offset, size_t len) const { return offset + len <= size; }
};

// Fields of union bpf_attr newer than the kernel headers here (Linux 6.1), by offset.
constexpr size_t kBpfLogTrueSize = 140;    // BPF_PROG_LOAD: the full size of the log (6.4)
constexpr size_t kBpfBtfLogTrueSize = 28;  // BPF_BTF_LOAD: likewise
constexpr size_t kBpfQueryLinkIds = 40;    // BPF_PROG_QUERY (6.6): link_ids,
constexpr size_t kBpfQueryLinkFlags = 48;  // link_attach_flags,
constexpr size_t kBpfQueryRevision = 56;   // and revision, which the kernel writes in any case

// A verifier log: the kernel writes within its `logSize` bytes, as many as the log's full size
// (when the block has room for that field, which the kernel fills then) or all of them.
void captureBpfLog(const Task& task, uint64_t attrAddr, const BpfAttr& attr, size_t bufAt,
                   size_t sizeAt, size_t trueSizeAt, std::vector<MemoryWrite>& out) {
  uint64_t len = attr.at<uint32_t>(sizeAt);
  if (attr.covers(trueSizeAt, sizeof(uint32_t))) {
    uint32_t trueSize = 0;
    if (task.tryRead(attrAddr + trueSizeAt, &trueSize, sizeof trueSize)) {
      len = std::min<uint64_t>(len, trueSize);
      capture(task, attrAddr + trueSizeAt, sizeof trueSize, out);
    }
  }
  capture(task, attr.at<uint64_t>(bufAt), len, out);
}

// BPF_PROG_QUERY: the flags, the count of programs and the revision, then up to as many entries
// as the program had room for (its count at entry) in each array it gave.
void captureBpfQuery(const Task& task, uint64_t attrAddr, const BpfAttr& attr,
                     const EntryValues& entry, std::vector<MemoryWrite>& out) {
  capture(task, attrAddr + offsetof(bpf_attr, query.attach_flags), sizeof(uint32_t), out);
  capture(task, attrAddr + offsetof(bpf_attr, query.prog_cnt), sizeof(uint32_t), out);
  capture(task, attrAddr + kBpfQueryRevision, sizeof(uint64_t), out);
  const uint64_t bytes = uint64_t(entry.count) * sizeof(uint32_t);
  for (size_t array :
       {offsetof(bpf_attr, query.prog_ids), offsetof(bpf_attr, query.prog_attach_flags),
        kBpfQueryLinkIds, kBpfQueryLinkFlags}) {
    if (attr.covers(array, sizeof(uint64_t))) capture(task, attr.at<uint64_t>(array), bytes, out);
  }
}

// What the object behind a descriptor of the task is, as the kernel names its anonymous inode
// ("bpf-prog", "bpf-map", "btf"...).
std::string anonInodeName(const Task& task, uint64_t fd) {
  std::string path = "/proc/" + std::to_string(task.tid()) + "/fd/" + std::to_string(int(fd));
  char link[256];
  ssize_t n = readlink(path.c_str(), link, sizeof link - 1);
  std::string target = n > 0 ? std::string(link, size_t(n)) : "";
  return target.rfind("anon_inode:", 0) == 0 ? target.substr(11) : target;
}

// BPF_OBJ_GET_INFO_BY_FD: the kernel copies its description of the object, as much of it as
// the program asked for, and sets info_len to that. It fills other buffers too when the
// description points to them (a program's instructions, map ids, BTF records; a BTF's data
// and name): those are refused, as are fields past the structures known here.
void captureBpfInfo(const Task& task, uint64_t attrAddr, const BpfAttr& attr,
                    std::vector<MemoryWrite>& out) {
  uint32_t len = 0;
  task.tryRead(attrAddr + offsetof(bpf_attr, info.info_len), &len, sizeof len);
  const uint64_t infoAddr = attr.at<uint64_t>(offsetof(bpf_attr, info.info));
  const std::string kind = anonInodeName(task, attr.at<uint32_t>(offsetof(bpf_attr, info.bpf_fd)));
  size_t known = 0;
  std::vector<size_t> pointers;
  if (kind == "bpf-prog") {
    known = sizeof(bpf_prog_info);
    pointers = {
        offsetof(bpf_prog_info, jited_prog_insns), offsetof(bpf_prog_info, xlated_prog_insns),
        offsetof(bpf_prog_info, map_ids),          offsetof(bpf_prog_info, jited_ksyms),
        offsetof(bpf_prog_info, jited_func_lens),  offsetof(bpf_prog_info, func_info),
        offsetof(bpf_prog_info, line_info),        offsetof(bpf_prog_info, jited_line_info),
        offsetof(bpf_prog_info, prog_tags)};
  } else if (kind == "bpf-map") {
    known = sizeof(bpf_map_info);
  } else if (kind == "btf") {
    known = sizeof(bpf_btf_info);
    pointers = {offsetof(bpf_btf_info, btf), offsetof(bpf_btf_info, name)};
  } else {
    fail(ErrorCode::Unsupported, "the program asked bpf (OBJ_GET_INFO_BY_FD) to describe " +
                                     (kind.empty() ? std::string("a descriptor") : kind) +
                                     ", which rewind cannot record yet");
  }
  std::vector<uint8_t> info(std::min<uint32_t>(len, 4096));
  if (!task.tryRead(infoAddr, info.data(), info.size())) return;
  bool unknown = len > info.size();
  for (size_t i = known; i < info.size(); i++) unknown = unknown || info[i] != 0;
  for (size_t at : pointers) {
    uint64_t p = 0;
    if (at + sizeof p <= info.size()) memcpy(&p, info.data() + at, sizeof p);
    unknown = unknown || p != 0;
  }
  if (unknown) {
    fail(ErrorCode::Unsupported,
         "the program asked bpf (OBJ_GET_INFO_BY_FD) for more than the "
         "description of " +
             kind +
             " (buffers it fills, or fields newer than rewind knows), "
             "which rewind cannot record yet");
  }
  out.push_back(MemoryWrite{infoAddr, std::move(info)});
  capture(task, attrAddr + offsetof(bpf_attr, info.info_len), sizeof len, out);
}

// What each bpf command writes into the program's memory. The descriptors it returns (programs,
// maps, BTF) are emulated in replay like any: every syscall on them comes from the recording.
void captureBpf(const Task& task, const uint64_t* args, int64_t result, const EntryValues& entry,
                std::vector<MemoryWrite>& out) {
  const BpfAttr attr(task, args[1], args[2]);
  const bool failed = result < 0 && result > -4096;
  switch (int(args[0])) {
    case BPF_PROG_LOAD:
      // The verifier's log, also (above all) when it refused the program; and when the program's
      // records were larger than the kernel's with more in them, the sizes it expects.
      captureBpfLog(task, args[1], attr, offsetof(bpf_attr, log_buf), offsetof(bpf_attr, log_size),
                    kBpfLogTrueSize, out);
      if (result == -E2BIG) {
        for (size_t at :
             {offsetof(bpf_attr, func_info_rec_size), offsetof(bpf_attr, line_info_rec_size),
              offsetof(bpf_attr, core_relo_rec_size)}) {
          if (attr.covers(at, sizeof(uint32_t))) capture(task, args[1] + at, sizeof(uint32_t), out);
        }
      }
      return;
    case BPF_BTF_LOAD:
      return captureBpfLog(task, args[1], attr, offsetof(bpf_attr, btf_log_buf),
                           offsetof(bpf_attr, btf_log_size), kBpfBtfLogTrueSize, out);
    case BPF_PROG_QUERY:
      // A query with less room than programs fills it and fails with ENOSPC.
      if (!failed || result == -ENOSPC) captureBpfQuery(task, args[1], attr, entry, out);
      return;
  }
  if (failed) return;  // the other commands write nothing when they fail
  switch (int(args[0])) {
    case BPF_MAP_CREATE:
    case BPF_MAP_UPDATE_ELEM:
    case BPF_MAP_DELETE_ELEM:
    case BPF_MAP_FREEZE:
    case BPF_OBJ_PIN:
    case BPF_OBJ_GET:
    case BPF_PROG_ATTACH:
    case BPF_PROG_DETACH:
    case BPF_PROG_BIND_MAP:
    case BPF_PROG_GET_FD_BY_ID:
    case BPF_MAP_GET_FD_BY_ID:
    case BPF_BTF_GET_FD_BY_ID:
      return;
    case BPF_PROG_GET_NEXT_ID:
    case BPF_MAP_GET_NEXT_ID:
    case BPF_BTF_GET_NEXT_ID:
      return capture(task, args[1] + offsetof(bpf_attr, next_id), sizeof(uint32_t), out);
    case BPF_OBJ_GET_INFO_BY_FD:
      return captureBpfInfo(task, args[1], attr, out);
    case BPF_MAP_LOOKUP_ELEM:
    case BPF_MAP_LOOKUP_AND_DELETE_ELEM:
    case BPF_MAP_GET_NEXT_KEY: {
      const bool next = args[0] == BPF_MAP_GET_NEXT_KEY;
      ProcFields info = procFdinfo(task.tid(), attr.at<uint32_t>(offsetof(bpf_attr, map_fd)));
      int64_t type = info.number("map_type", 10, -1);
      int64_t size = info.number(next ? "key_size" : "value_size", 10, -1);
      bool perCpu = type == BPF_MAP_TYPE_PERCPU_HASH || type == BPF_MAP_TYPE_PERCPU_ARRAY ||
                    type == BPF_MAP_TYPE_LRU_PERCPU_HASH ||
                    type == BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE;
      if (size < 0 || (!next && perCpu)) break;
      return capture(
          task, attr.at<uint64_t>(next ? offsetof(bpf_attr, next_key) : offsetof(bpf_attr, value)),
          uint64_t(size), out);
    }
  }
  unsupportedRequest("bpf", args[0]);
}

void captureKeyctl(const Task& task, const uint64_t* args, int64_t result,
                   std::vector<MemoryWrite>& out) {
  switch (int(args[0])) {
    case KEYCTL_DESCRIBE:
    case KEYCTL_READ:
    case KEYCTL_GET_SECURITY:
    case KEYCTL_DH_COMPUTE:
      // The result is the whole size: no more than the buffer's length was copied.
      return capture(task, args[2], std::min<uint64_t>(uint64_t(result), args[3]), out);
    case KEYCTL_CAPABILITIES:
      return capture(task, args[1], std::min<uint64_t>(uint64_t(result), args[2]), out);
    case KEYCTL_GET_KEYRING_ID:
    case KEYCTL_JOIN_SESSION_KEYRING:
    case KEYCTL_UPDATE:
    case KEYCTL_REVOKE:
    case KEYCTL_CHOWN:
    case KEYCTL_SETPERM:
    case KEYCTL_CLEAR:
    case KEYCTL_LINK:
    case KEYCTL_UNLINK:
    case KEYCTL_SEARCH:
    case KEYCTL_INSTANTIATE:
    case KEYCTL_NEGATE:
    case KEYCTL_SET_REQKEY_KEYRING:
    case KEYCTL_SET_TIMEOUT:
    case KEYCTL_ASSUME_AUTHORITY:
    case KEYCTL_SESSION_TO_PARENT:
    case KEYCTL_REJECT:
    case KEYCTL_INSTANTIATE_IOV:
    case KEYCTL_INVALIDATE:
    case KEYCTL_GET_PERSISTENT:
    case KEYCTL_RESTRICT_KEYRING:
    case KEYCTL_MOVE:
      return;
  }
  unsupportedRequest("keyctl", args[0]);
}

void captureQuotactl(const Task& task, const uint64_t* args, std::vector<MemoryWrite>& out) {
  uint64_t bytes = 0;
  switch (int(args[0]) >> SUBCMDSHIFT) {
    case Q_GETQUOTA:
      bytes = sizeof(if_dqblk);
      break;
    case Q_GETNEXTQUOTA:
      bytes = sizeof(if_nextdqblk);
      break;
    case Q_GETINFO:
      bytes = sizeof(if_dqinfo);
      break;
    case Q_GETFMT:
      bytes = sizeof(uint32_t);
      break;
    case Q_XGETQUOTA:
    case Q_XGETNEXTQUOTA:
      bytes = sizeof(fs_disk_quota);
      break;
    case Q_XGETQSTAT:
      bytes = sizeof(fs_quota_stat);
      break;
    case Q_XGETQSTATV:
      bytes = sizeof(fs_quota_statv);
      break;
    case Q_QUOTAON:
    case Q_QUOTAOFF:
    case Q_SETQUOTA:
    case Q_SETINFO:
    case Q_SYNC:
    case Q_XQUOTAON:
    case Q_XQUOTAOFF:
    case Q_XSETQLIM:
    case Q_XQUOTARM:
    case Q_XQUOTASYNC:
      break;
    default:
      unsupportedRequest("quotactl", args[0]);
  }
  capture(task, args[3], bytes, out);
}

// How many semaphores a set has, asked by the recorder in the tracee's IPC namespace.
uint64_t semaphoreCount(const Task& task, int semid) {
  struct stat own, its;
  std::string ns = "/proc/" + std::to_string(task.tid()) + "/ns/ipc";
  semid_ds ds{};
  if (stat("/proc/self/ns/ipc", &own) < 0 || stat(ns.c_str(), &its) < 0 ||
      own.st_ino != its.st_ino || semctl(semid, 0, IPC_STAT, &ds) < 0) {
    fail(ErrorCode::Unsupported,
         "the program used semctl GETALL on a semaphore set the recorder "
         "cannot see (another IPC namespace, or removed meanwhile)");
  }
  return ds.sem_nsems;
}

void captureSemctl(const Task& task, const uint64_t* args, std::vector<MemoryWrite>& out) {
  switch (int(args[2]) & ~kIpc64) {
    case IPC_STAT:
    case SEM_STAT:
    case SEM_STAT_ANY:
      return capture(task, args[3], sizeof(semid_ds), out);
    case IPC_INFO:
    case SEM_INFO:
      return capture(task, args[3], sizeof(seminfo), out);
    case GETALL:
      return capture(task, args[3], semaphoreCount(task, int(args[0])) * sizeof(uint16_t), out);
    case IPC_RMID:
    case IPC_SET:
    case GETVAL:
    case GETPID:
    case GETNCNT:
    case GETZCNT:
    case SETVAL:
    case SETALL:
      return;
  }
  unsupportedRequest("semctl", args[2]);
}

void captureMsgctl(const Task& task, const uint64_t* args, std::vector<MemoryWrite>& out) {
  switch (int(args[1]) & ~kIpc64) {
    case IPC_STAT:
    case MSG_STAT:
    case MSG_STAT_ANY:
      return capture(task, args[2], sizeof(msqid_ds), out);
    case IPC_INFO:
    case MSG_INFO:
      return capture(task, args[2], sizeof(msginfo), out);
    case IPC_RMID:
    case IPC_SET:
      return;
  }
  unsupportedRequest("msgctl", args[1]);
}

// The _sysctl call's argument block (the syscall is gone from recent kernels: ENOSYS).
struct SysctlArgs {
  uint64_t name;
  int32_t nlen;
  uint64_t oldval, oldlenp, newval, newlen;
};

void captureSysctl(const Task& task, const uint64_t* args, std::vector<MemoryWrite>& out) {
  SysctlArgs a;
  uint64_t oldlen = 0;
  if (!task.tryRead(args[0], &a, sizeof a) || !a.oldlenp) return;
  if (!task.tryRead(a.oldlenp, &oldlen, sizeof oldlen)) return;
  capture(task, a.oldlenp, sizeof oldlen, out);
  capture(task, a.oldval, oldlen, out);
}

void captureFdSets(const Task& task, const uint64_t* args, uint64_t timeoutArg,
                   std::vector<MemoryWrite>& out) {
  uint64_t bytes = (std::min<uint64_t>(args[0], 1 << 20) + 63) / 64 * 8;
  for (int i = 1; i <= 3; i++) capture(task, args[i], bytes, out);
  capture(task, args[timeoutArg], 16, out);
}

// What an (emulated) ptrace request wrote to the tracer's memory: at `data`.
void capturePtrace(const Task& task, const uint64_t* args, int64_t result,
                   std::vector<MemoryWrite>& out) {
  switch (long(args[0])) {
    case PTRACE_GET_SYSCALL_INFO:  // the info's size, of which the kernel copies what fits
      return capture(task, args[3], std::min<uint64_t>(uint64_t(result), args[2]), out);
    case PTRACE_ARCH_PRCTL:  // ARCH_GET_FS, ARCH_GET_GS: the base, where `addr` points
      if (args[3] == ARCH_GET_FS || args[3] == ARCH_GET_GS) capture(task, args[2], 8, out);
      return;
    case PTRACE_PEEKTEXT:
    case PTRACE_PEEKDATA:
    case PTRACE_PEEKUSER:
    case PTRACE_GETEVENTMSG:
      return capture(task, args[3], sizeof(uint64_t), out);
    case PTRACE_GETREGS:
      return capture(task, args[3], sizeof(user_regs_struct), out);
    case PTRACE_GETFPREGS:
      return capture(task, args[3], sizeof(user_fpregs_struct), out);
    case PTRACE_GETSIGINFO:
      return capture(task, args[3], sizeof(siginfo_t), out);
    case PTRACE_GETREGSET: {
      iovec iov{};
      if (!task.tryRead(args[3], &iov, sizeof iov)) return;
      capture(task, args[3], sizeof iov, out);
      return capture(task, uint64_t(iov.iov_base), std::min<uint64_t>(iov.iov_len, 1 << 16), out);
    }
  }
}

void captureCustom(const Task& task, long nr, const uint64_t* args, int64_t result,
                   const EntryValues& entry, std::vector<MemoryWrite>& out) {
  switch (nr) {
    case SYS_readv:
    case SYS_preadv:
    case SYS_preadv2:
      return captureIovecs(task, args[1], args[2], uint64_t(result), out);
    case SYS_ioctl:
      return captureIoctl(task, args, result, out);
    case SYS_fcntl:
      return captureFcntl(task, args, out);
    case SYS_ptrace:
      if (result >= 0) capturePtrace(task, args, result, out);
      return;
    case SYS_prctl:
      return capturePrctl(task, args, out);
    case SYS_recvmsg:
      return captureReceived(task, args[1], uint64_t(result), out);
    case SYS_recvmmsg:
      return captureRecvmmsg(task, args, result, out);
    case SYS_process_vm_readv:
      return captureIovecs(task, args[1], args[2], uint64_t(result), out);
    case SYS_process_vm_writev:
      return captureVmWrite(task, args, result, out);
    case SYS_bpf:
      return captureBpf(task, args, result, entry, out);
    case SYS_keyctl:
      return captureKeyctl(task, args, result, out);
    case SYS_quotactl:
      return captureQuotactl(task, args, out);
    case SYS_semctl:
      return captureSemctl(task, args, out);
    case SYS_msgctl:
      return captureMsgctl(task, args, out);
    case SYS_msgrcv:  // the message type, then the text
      return capture(task, args[1], sizeof(long) + uint64_t(result), out);
    case SYS__sysctl:
      return captureSysctl(task, args, out);
    case SYS_syslog:
      if (args[0] == kSyslogRead || args[0] == kSyslogReadAll || args[0] == kSyslogReadClear) {
        capture(task, args[1], uint64_t(result), out);
      }
      return;
    case SYS_sysfs:  // option 2 copies a file system's name
      if (args[0] == 2) capture(task, args[2], task.readCString(args[2], 256).size() + 1, out);
      return;
    case SYS_sched_getattr: {
      uint32_t size = 0;  // the kernel sets it to the bytes it wrote
      if (task.tryRead(args[1], &size, sizeof size)) {
        capture(task, args[1], std::min<uint64_t>(size, args[2]), out);
      }
      return;
    }
    case SYS_get_mempolicy:
      capture(task, args[0], sizeof(int), out);
      // The kernel fills the mask rounded up to whole longs, at most a page of it.
      if (args[2] >= 1) {
        capture(task, args[1], std::min<uint64_t>((args[2] + 62) / 64 * 8, 4096), out);
      }
      return;
    case SYS_poll:
    case SYS_ppoll:
      capture(task, args[0], std::min<uint64_t>(args[1], 1 << 16) * 8, out);
      if (nr == SYS_ppoll) capture(task, args[2], 16, out);
      return;
    case SYS_select:
    case SYS_pselect6:
      return captureFdSets(task, args, 4, out);
    case SYS_epoll_wait:
    case SYS_epoll_pwait:
    case 441:  // epoll_pwait2
      return capture(task, args[1], uint64_t(result) * 12, out);
    case SYS_getgroups:
      return capture(task, args[1], uint64_t(result) * 4, out);
    case SYS_capget:
      // The header's version decides how many data structs follow.
      capture(task, args[0], sizeof(__user_cap_header_struct), out);
      return capture(task, args[1], 2 * sizeof(__user_cap_data_struct), out);
    case SYS_mincore:
      return capture(task, args[2], (args[1] + 4095) / 4096, out);
    case SYS_sendmmsg:
      return capture(task, args[1], uint64_t(result) * sizeof(mmsghdr), out);
    case SYS_setsockopt:
      return captureSetsockopt(task, args, out);
    case SYS_seccomp:
      // SECCOMP_GET_NOTIF_SIZES: three u16 sizes.
      if (args[0] == SECCOMP_GET_NOTIF_SIZES) capture(task, args[2], 6, out);
      return;
    case SYS_shmctl:
      return captureShmctl(task, args, out);
    case SYS_futex:
      return captureFutex(task, args, out);
  }
  fail(ErrorCode::System, std::string("no output rule for ") + syscallName(nr));
}

}  // namespace

EntryValues readEntryValues(const Task& task, long nr, const SyscallSpec& spec,
                            const uint64_t* args) {
  EntryValues v;
  if (nr == SYS_bpf && args[0] == BPF_PROG_QUERY) {
    v.count = BpfAttr(task, args[1], args[2]).at<uint32_t>(offsetof(bpf_attr, query.prog_cnt));
  }
  for (int i = 0; i < 3; i++) {
    const Output& o = spec.outputs[i];
    if (o.size == OutputSize::SockLen && args[o.sizeArg]) {
      task.tryRead(args[o.sizeArg], &v.sockLen[i], sizeof(uint32_t));
    }
  }
  return v;
}

std::vector<MemoryWrite> captureOutputs(const Task& task, long nr, const SyscallSpec& spec,
                                        const uint64_t* args, int64_t result,
                                        const EntryValues& entry) {
  std::vector<MemoryWrite> out;
  // Failed syscalls write nothing replay needs, but for the time left of an interrupted sleep.
  // (-EINTR, or a restart code the kernel turns into -EINTR as it delivers the signal).
  bool interrupted = result == -EINTR || isRestartCode(result);
  bool sleepInterrupted = interrupted && (nr == SYS_nanosleep || nr == SYS_clock_nanosleep);
  if (result == -E2BIG && (nr == SYS_sched_setattr || nr == SYS_perf_event_open)) {
    // A structure of a size the kernel does not know: it writes the size it knows in its field.
    uint64_t sizeField = nr == SYS_sched_setattr ? args[1] : args[0] + 4;
    capture(task, sizeField, sizeof(uint32_t), out);
  }
  if (result < 0 && result > -4096 && !sleepInterrupted) {
    // But bpf's: a verifier log, a query's answer that did not fit.
    if (nr == SYS_bpf) captureBpf(task, args, result, entry, out);
    return out;
  }
  for (int i = 0; i < 3; i++) {
    const Output& o = spec.outputs[i];
    switch (o.size) {
      case OutputSize::None:
        break;
      case OutputSize::Fixed:
        capture(task, args[o.arg], o.bytes, out);
        break;
      case OutputSize::Result:
        capture(task, args[o.arg], uint64_t(result), out);
        break;
      case OutputSize::ArgValue:
        capture(task, args[o.arg], args[o.sizeArg], out);
        break;
      case OutputSize::SockLen: {
        uint32_t after = 0;
        if (args[o.sizeArg]) task.tryRead(args[o.sizeArg], &after, sizeof after);
        capture(task, args[o.arg], std::min(entry.sockLen[i], after), out);
        break;
      }
      case OutputSize::Custom:
        captureCustom(task, nr, args, result, entry, out);
        break;
    }
  }
  return out;
}

namespace {

void append(const Task& task, uint64_t addr, uint64_t len, std::vector<uint8_t>& data) {
  std::vector<MemoryWrite> part;
  capture(task, addr, len, part);
  for (const MemoryWrite& p : part) data.insert(data.end(), p.data.begin(), p.data.end());
}

void appendIovecs(const Task& task, uint64_t iovAddr, uint64_t count, uint64_t total,
                  std::vector<uint8_t>& data) {
  std::vector<MemoryWrite> parts;
  captureIovecs(task, iovAddr, count, total, parts);
  for (const MemoryWrite& p : parts) data.insert(data.end(), p.data.begin(), p.data.end());
}

// A message's data, destination and control data (descriptors passed with SCM_RIGHTS).
void appendMessage(const Task& task, const msghdr& msg, uint64_t bytes, SentData& out) {
  appendIovecs(task, uint64_t(msg.msg_iov), msg.msg_iovlen, bytes, out.payload);
  append(task, uint64_t(msg.msg_name), std::min<uint64_t>(msg.msg_namelen, 4096), out.envelope);
  append(task, uint64_t(msg.msg_control), std::min<uint64_t>(msg.msg_controllen, 1 << 16),
         out.envelope);
}

}  // namespace

uint64_t SentData::hash() const {
  std::vector<uint8_t> all = payload;
  all.insert(all.end(), envelope.begin(), envelope.end());
  return fnv1a(all.data(), all.size());
}

SentData sentData(const Task& task, long nr, const SyscallSpec& spec, const uint64_t* args,
                  int64_t result) {
  SentData out;
  // Nothing sent (a message sent by msgsnd or mq_timedsend returns 0).
  if (result < 0 || (result == 0 && spec.sent != Sent::Sized)) return out;
  switch (spec.sent) {
    case Sent::None:
    case Sent::Copied:
      break;
    case Sent::Buffer:
      append(task, args[1], uint64_t(result), out.payload);
      if (nr == SYS_sendto) append(task, args[4], std::min<uint64_t>(args[5], 4096), out.envelope);
      break;
    case Sent::Iovec:
      appendIovecs(task, args[1], args[2], uint64_t(result), out.payload);
      break;
    case Sent::Message: {
      msghdr msg;
      if (task.tryRead(args[1], &msg, sizeof msg)) appendMessage(task, msg, uint64_t(result), out);
      break;
    }
    case Sent::Sized:
      append(task, args[1],
             std::min<uint64_t>(args[2], 1 << 24) + (nr == SYS_msgsnd ? sizeof(long) : 0),
             out.payload);
      break;
    case Sent::Messages:
      for (uint64_t i = 0; i < std::min<uint64_t>(uint64_t(result), 1024); i++) {
        mmsghdr m;
        if (!task.tryRead(args[1] + i * sizeof m, &m, sizeof m)) break;
        appendMessage(task, m.msg_hdr, m.msg_len, out);
      }
      break;
  }
  return out;
}

}  // namespace rwd
