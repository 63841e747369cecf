#include "core/syscall_buffers.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/futex.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#include <algorithm>
#include <string>

#include "core/error.h"

namespace rwd {
namespace {

// The kernel's struct termios, which TCGETS fills (smaller than the C library's).
constexpr uint64_t kKernelTermiosSize = 36;
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

void captureIoctl(const Task& task, const uint64_t* args, std::vector<MemoryWrite>& out) {
  uint64_t request = args[1] & 0xffffffff, arg = args[2];
  switch (request) {
    case TCGETS:
      return capture(task, arg, kKernelTermiosSize, out);
    case TIOCGWINSZ:
      return capture(task, arg, sizeof(struct winsize), out);
    case FIONREAD:
    case TIOCGPGRP:
    case TIOCGSID:
    case TIOCOUTQ:
      return capture(task, arg, sizeof(int), out);
    case TCSETS:
    case TCSETSW:
    case TCSETSF:
    case TIOCSPGRP:
    case TIOCSWINSZ:
    case FIONBIO:
    case FIOCLEX:
    case FIONCLEX:
    case FIOASYNC:
      return;
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

void captureRecvmsg(const Task& task, const uint64_t* args, int64_t result,
                    std::vector<MemoryWrite>& out) {
  msghdr msg;
  if (!task.tryRead(args[1], &msg, sizeof msg)) return;
  capture(task, args[1], sizeof msg, out);  // the kernel updates lengths and flags
  capture(task, uint64_t(msg.msg_name), msg.msg_namelen, out);
  capture(task, uint64_t(msg.msg_control), msg.msg_controllen, out);
  captureIovecs(task, uint64_t(msg.msg_iov), msg.msg_iovlen, uint64_t(result), out);
}

void captureFdSets(const Task& task, const uint64_t* args, uint64_t timeoutArg,
                   std::vector<MemoryWrite>& out) {
  uint64_t bytes = (std::min<uint64_t>(args[0], 1 << 20) + 63) / 64 * 8;
  for (int i = 1; i <= 3; i++) capture(task, args[i], bytes, out);
  capture(task, args[timeoutArg], 16, out);
}

void captureCustom(const Task& task, long nr, const uint64_t* args, int64_t result,
                   std::vector<MemoryWrite>& out) {
  switch (nr) {
    case SYS_readv:
    case SYS_preadv:
    case SYS_preadv2:
      return captureIovecs(task, args[1], args[2], uint64_t(result), out);
    case SYS_ioctl:
      return captureIoctl(task, args, out);
    case SYS_fcntl:
      return captureFcntl(task, args, out);
    case SYS_prctl:
      return capturePrctl(task, args, out);
    case SYS_recvmsg:
      return captureRecvmsg(task, args, result, out);
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
    case SYS_shmctl:
      return captureShmctl(task, args, out);
    case SYS_futex:
      return captureFutex(task, args, out);
  }
  fail(ErrorCode::System, std::string("no output rule for ") + syscallName(nr));
}

}  // namespace

EntryValues readEntryValues(const Task& task, const SyscallSpec& spec, const uint64_t* args) {
  EntryValues v;
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
  bool interrupted = result == -EINTR || (result >= -516 && result <= -512);
  bool sleepInterrupted = interrupted && (nr == SYS_nanosleep || nr == SYS_clock_nanosleep);
  if (result < 0 && result > -4096 && !sleepInterrupted) return out;
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
        captureCustom(task, nr, args, result, out);
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
  if (result <= 0) return out;  // nothing sent
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
