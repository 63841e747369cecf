#include "record/seccomp_filter.h"

#include <linux/audit.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <cstddef>
#include <cstring>

#include "core/error.h"
#include "core/stub_layout.h"
#include "core/syscall_table.h"

namespace rwd {
namespace {

constexpr uint32_t kMaxFilterLength = 4096;  // BPF_MAXINSNS
constexpr int kRedZone = 128;
constexpr uint32_t kRuleLength = 6;  // rewind's rule in front of each of the program's filters

// The kernel's precedence: the action with the lowest value as a signed number wins.
int32_t precedence(uint32_t ret) { return int32_t(ret & SECCOMP_RET_ACTION_FULL); }

// Runs a classic BPF program on `data` as the kernel does for seccomp (A and X start at 0; the
// kernel accepted the program, so every jump stays inside it and it ends with a return).
uint32_t run(const BpfProgram& prog, const seccomp_data& data) {
  uint32_t a = 0, x = 0, mem[BPF_MEMWORDS] = {};
  auto word = [&](uint32_t offset) {
    uint32_t v = 0;
    if (offset % 4 == 0 && offset + 4 <= sizeof data)
      memcpy(&v, reinterpret_cast<const uint8_t*>(&data) + offset, 4);
    return v;
  };
  for (size_t pc = 0; pc < prog.size(); pc++) {
    const sock_filter& f = prog[pc];
    const uint32_t operand = BPF_SRC(f.code) == BPF_X ? x : f.k;
    switch (BPF_CLASS(f.code)) {
      case BPF_LD:
        a = BPF_MODE(f.code) == BPF_ABS   ? word(f.k)
            : BPF_MODE(f.code) == BPF_LEN ? uint32_t(sizeof data)
            : BPF_MODE(f.code) == BPF_MEM ? mem[f.k % BPF_MEMWORDS]
                                          : f.k;
        break;
      case BPF_LDX:
        x = BPF_MODE(f.code) == BPF_LEN   ? uint32_t(sizeof data)
            : BPF_MODE(f.code) == BPF_MEM ? mem[f.k % BPF_MEMWORDS]
                                          : f.k;
        break;
      case BPF_ST:
        mem[f.k % BPF_MEMWORDS] = a;
        break;
      case BPF_STX:
        mem[f.k % BPF_MEMWORDS] = x;
        break;
      case BPF_ALU:
        switch (BPF_OP(f.code)) {
          case BPF_ADD:
            a += operand;
            break;
          case BPF_SUB:
            a -= operand;
            break;
          case BPF_MUL:
            a *= operand;
            break;
          case BPF_DIV:
            if (operand == 0) return 0;  // the kernel ends the program with 0
            a /= operand;
            break;
          case BPF_MOD:
            if (operand == 0) return 0;
            a %= operand;
            break;
          case BPF_AND:
            a &= operand;
            break;
          case BPF_OR:
            a |= operand;
            break;
          case BPF_XOR:
            a ^= operand;
            break;
          case BPF_LSH:
            a = operand < 32 ? a << operand : 0;
            break;
          case BPF_RSH:
            a = operand < 32 ? a >> operand : 0;
            break;
          case BPF_NEG:
            a = -a;
            break;
          default:
            fail(ErrorCode::Unsupported, "a seccomp filter instruction rewind cannot evaluate");
        }
        break;
      case BPF_JMP: {
        if (BPF_OP(f.code) == BPF_JA) {
          pc += f.k;
          break;
        }
        bool taken = false;
        switch (BPF_OP(f.code)) {
          case BPF_JEQ:
            taken = a == operand;
            break;
          case BPF_JGT:
            taken = a > operand;
            break;
          case BPF_JGE:
            taken = a >= operand;
            break;
          case BPF_JSET:
            taken = (a & operand) != 0;
            break;
          default:
            fail(ErrorCode::Unsupported, "a seccomp filter instruction rewind cannot evaluate");
        }
        pc += taken ? f.jt : f.jf;
        break;
      }
      case BPF_RET:
        return BPF_RVAL(f.code) == BPF_A ? a : f.k;
      case BPF_MISC:
        if (BPF_MISCOP(f.code) == BPF_TAX) {
          x = a;
        } else {
          a = x;
        }
        break;
    }
  }
  fail(ErrorCode::Unsupported, "a seccomp filter that runs past its end");
}

// The syscall's arguments at index `i` of the registers.
uint64_t argument(const Regs& r, int i) {
  const uint64_t args[6] = {r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9};
  return args[i];
}

}  // namespace

SyscallEvent::Filtered SeccompFilters::classify(const Regs& entry) const {
  seccomp_data data{};
  data.nr = int(syscallNumber(entry.orig_rax));
  data.arch = AUDIT_ARCH_X86_64;
  data.instruction_pointer = entry.rip;
  for (int i = 0; i < 6; i++) data.args[i] = argument(entry, i);
  uint32_t ret = SECCOMP_RET_ALLOW;
  for (auto it = programs_.rbegin(); it != programs_.rend(); ++it) {
    uint32_t r = run(**it, data);
    if (precedence(r) < precedence(ret)) ret = r;  // on a tie the newest filter's stands
  }
  switch (ret & SECCOMP_RET_ACTION_FULL) {
    case SECCOMP_RET_ALLOW:
    case SECCOMP_RET_LOG:
      return SyscallEvent::Filtered::No;
    // Without a listener (refused) and without a tracer that asked for seccomp events (the
    // recorder does not), the kernel answers USER_NOTIF and TRACE with ENOSYS.
    case SECCOMP_RET_ERRNO:
    case SECCOMP_RET_TRAP:
    case SECCOMP_RET_TRACE:
    case SECCOMP_RET_USER_NOTIF:
      return SyscallEvent::Filtered::Returned;
    case SECCOMP_RET_KILL_THREAD:
      return SyscallEvent::Filtered::KilledThread;
    default:  // SECCOMP_RET_KILL_PROCESS, and any action the kernel does not know
      return SyscallEvent::Filtered::KilledProcess;
  }
}

std::optional<FilterInstall> FilterInstall::begin(Task& task, const Regs& entry) {
  const long nr = syscallNumber(entry.orig_rax);
  const bool viaSeccomp = nr == SYS_seccomp;
  const bool viaPrctl = nr == SYS_prctl && entry.rdi == PR_SET_SECCOMP;
  if (!viaSeccomp && !viaPrctl) return std::nullopt;
  const uint64_t mode = entry.rdi, flags = viaSeccomp ? entry.rsi : 0;
  if ((viaSeccomp && mode == SECCOMP_SET_MODE_STRICT) ||
      (viaPrctl && entry.rsi == SECCOMP_MODE_STRICT)) {
    fail(ErrorCode::Unsupported,
         "the program set seccomp strict mode, which rewind does not support: it would kill the "
         "program at rewind's own syscalls");
  }
  if ((viaSeccomp && mode != SECCOMP_SET_MODE_FILTER) ||
      (viaPrctl && entry.rsi != SECCOMP_MODE_FILTER)) {
    return std::nullopt;
  }
  if (flags & SECCOMP_FILTER_FLAG_NEW_LISTENER) {
    fail(ErrorCode::Unsupported,
         "the program installed a seccomp filter with a user-notification listener "
         "(SECCOMP_FILTER_FLAG_NEW_LISTENER), which rewind does not support");
  }
  sock_fprog fprog{};
  if (!task.tryRead(entry.rdx, &fprog, sizeof fprog) || fprog.len == 0 ||
      fprog.len > kMaxFilterLength) {
    return std::nullopt;  // the kernel fails it (EFAULT, EINVAL)
  }
  auto program = std::make_shared<BpfProgram>(fprog.len);
  if (!task.tryRead(uint64_t(fprog.filter), program->data(), fprog.len * sizeof(sock_filter))) {
    return std::nullopt;
  }
  if (uint32_t(fprog.len) + kRuleLength > kMaxFilterLength) {
    fail(ErrorCode::Unsupported, "the program installed a seccomp filter of " +
                                     std::to_string(fprog.len) +
                                     " instructions, which leaves no room for rewind's own rule");
  }
  // Rewind's rule: a syscall from kRewindSyscallIp is allowed; then the program's filter, with A
  // back at 0 as it starts.
  const uint32_t ipLow = offsetof(seccomp_data, instruction_pointer);
  BpfProgram copy = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ipLow + 4),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, uint32_t(kRewindSyscallIp >> 32), 0, 3),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ipLow),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, uint32_t(kRewindSyscallIp), 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_IMM, 0),
  };
  copy.insert(copy.end(), program->begin(), program->end());
  const size_t bytes = sizeof(sock_fprog) + copy.size() * sizeof(sock_filter);
  FilterInstall install;
  install.program_ = std::move(program);
  install.tsync_ = flags & SECCOMP_FILTER_FLAG_TSYNC;
  install.scratch_ = (entry.rsp - kRedZone - bytes) & ~uint64_t(15);
  install.saved_.resize(bytes);
  sock_fprog moved{uint16_t(copy.size()),
                   reinterpret_cast<sock_filter*>(install.scratch_ + sizeof(sock_fprog))};
  std::vector<uint8_t> image(bytes);
  memcpy(image.data(), &moved, sizeof moved);
  memcpy(image.data() + sizeof moved, copy.data(), copy.size() * sizeof(sock_filter));
  if (!task.tryRead(install.scratch_, install.saved_.data(), bytes) ||
      !task.tryWrite(install.scratch_, image.data(), bytes)) {
    fail(ErrorCode::Unsupported,
         "the program installed a seccomp filter where its stack has no room for rewind's copy");
  }
  install.argument_ = entry.rdx;
  Regs r = entry;
  r.rdx = install.scratch_;
  task.setRegs(r);
  return install;
}

std::shared_ptr<const BpfProgram> FilterInstall::finish(Task& task, int64_t result) {
  task.tryWrite(scratch_, saved_.data(), saved_.size());
  Regs r = task.regs();
  r.rdx = argument_;
  task.setRegs(r);
  return result == 0 ? program_ : nullptr;
}

}  // namespace rwd
