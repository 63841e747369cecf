/*
 * The syscall buffer's side in the recorded process (docs/syscall-buffer.md), preloaded by the
 * recorder (LD_PRELOAD). It takes the place of libc's entry points for frequent syscalls that
 * cannot block, makes them through the trampoline page (which the recorder's seccomp filter lets
 * through without a ptrace stop) and records each one in a buffer of its thread: number,
 * arguments, result and the bytes it wrote. The recorder writes the records into the trace at its
 * next stop. Replay runs this same code; its syscalls then stop and get their recorded results.
 *
 * Everything else, and every call this code cannot prove harmless to buffer (a descriptor that is
 * not a regular file, an output too large), goes to libc's own function, as without the library
 * (a pthread cancellation point stays one; the clocks go through the vDSO, which the recorder
 * turned into syscalls of its own).
 * Built with -mno-red-zone: a call to the trampoline pushes its return address below the stack
 * pointer.
 *
 * It also reads the TSC for rdtsc instructions the recorder patched (record/rdtsc_patch.h).
 */
#define _GNU_SOURCE
/* node-gyp builds with 64-bit offsets, which renames stat to stat64 &c.: both are defined here. */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/types.h>
#include <time.h>

#include "core/syscall_buffer_abi.h"

/* No SSE or x87 registers: the TSC hook below runs in the middle of the program's code, and only
 * saves the general ones. */
#pragma GCC target("general-regs-only")

#define EXPORT __attribute__((visibility("default")))
#define barrier() __asm__ volatile("" ::: "memory")

void rwd_tsc_hook(void);
extern char __start_rwd_tsc_text[] __attribute__((visibility("hidden")));
extern char __stop_rwd_tsc_text[] __attribute__((visibility("hidden")));
static struct rwd_control control = {.tsc_hook = (uint64_t)rwd_tsc_hook,
                                     .tsc_code_start = (uint64_t)__start_rwd_tsc_text,
                                     .tsc_code_end = (uint64_t)__stop_rwd_tsc_text};
/* 0: not asked yet, 1: buffering, 2: not (refused, or no memory for it). */
static __thread int state __attribute__((tls_model("initial-exec")));
static __thread struct rwd_buffer_header* buffer __attribute__((tls_model("initial-exec")));

/* libc's own `name`, found once. */
#define NEXT(type, name, ...)       \
  static type (*next)(__VA_ARGS__); \
  if (!next) next = (type(*)(__VA_ARGS__))dlsym(RTLD_NEXT, name)

#define INLINE static inline __attribute__((always_inline))

/* A syscall from this library's own instruction: the recorder stops it as any other. */
INLINE long traced(long nr, long a0, long a1, long a2, long a3, long a4, long a5) {
  register long r10 __asm__("r10") = a3;
  register long r8 __asm__("r8") = a4;
  register long r9 __asm__("r9") = a5;
  long ret;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(nr), "D"(a0), "S"(a1), "d"(a2), "r"(r10), "r"(r8), "r"(r9)
                   : "rcx", "r11", "memory");
  return ret;
}

/* A syscall from the trampoline: no stop. */
INLINE long untraced(long nr, long a0, long a1, long a2, long a3) {
  register long r10 __asm__("r10") = a3;
  long ret;
  __asm__ volatile("call *%[at]"
                   : "=a"(ret)
                   : "a"(nr), "D"(a0), "S"(a1), "d"(a2), "r"(r10), [at] "r"(RWD_TRAMPOLINE)
                   : "rcx", "r11", "r8", "r9", "memory");
  return ret;
}

static long fail(long ret) {
  if (ret < 0 && ret > -4096) {
    errno = (int)-ret;
    return -1;
  }
  return ret;
}

/* The thread's buffer, set up on its first use; NULL when it does not buffer. A forked child
 * keeps its parent's, which the recorder knows it has; a new thread has a fresh `state`. */
static struct rwd_buffer_header* threadBuffer(void) {
  if (state == 1 && control.enabled) return buffer;
  if (state) return NULL;
  state = 2;
  long at = traced(SYS_mmap, 0, RWD_BUFFER_SIZE, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (at < 0 && at > -4096) return NULL;
  struct rwd_buffer_header* b = (struct rwd_buffer_header*)at;
  b->used = sizeof *b;
  b->size = RWD_BUFFER_SIZE;
  if (traced(RWD_SYS_BUFFER_INIT, (long)&control, at, RWD_BUFFER_SIZE, 0, 0, 0) != 1) {
    traced(SYS_munmap, at, RWD_BUFFER_SIZE, 0, 0, 0, 0);
    return NULL;
  }
  control.enabled = 1;
  buffer = b;
  state = 1;
  return b;
}

/* Copies without libc: nothing here may reach code that could make a syscall. */
static void copy(void* to, const void* from, size_t n) {
  unsigned char* d = to;
  const unsigned char* s = from;
  for (size_t i = 0; i < n; i++) d[i] = s[i];
}

/* Makes syscall `nr` from the trampoline and records it with the `outLen` bytes at `out` it
 * wrote (outLen < 0: as many as the result says, at most `maxOut`). Returns 1 with the result
 * in *ret, or 0 when the caller must make the syscall the traced way. */
static int buffered(long nr, long a0, long a1, long a2, long a3, void* out, long outLen,
                    size_t maxOut, long* ret) {
  struct rwd_buffer_header* b = threadBuffer();
  if (!b || maxOut > RWD_MAX_OUTPUT) return 0;
  size_t need = sizeof(struct rwd_record) + ((maxOut + 7) & ~(size_t)7);
  if (b->size - b->used < need) traced(RWD_SYS_BUFFER_FLUSH, 0, 0, 0, 0, 0, 0); /* emptied */
  /* From here to the commit no signal handler runs (the recorder delivers none inside), so a
   * handler's own buffered syscalls never take this record's place. */
  b->in_call = 1;
  barrier();
  if (b->size - b->used < need) {
    b->in_call = 0;
    return 0;
  }
  struct rwd_record* rec = (struct rwd_record*)((char*)b + b->used);
  long r = untraced(nr, a0, a1, a2, a3);
  rec->nr = (int32_t)nr;
  rec->args[0] = (uint64_t)a0;
  rec->args[1] = (uint64_t)a1;
  rec->args[2] = (uint64_t)a2;
  rec->args[3] = (uint64_t)a3;
  rec->args[4] = 0;
  rec->args[5] = 0;
  rec->result = r;
  size_t len = 0;
  if (out && !(r < 0 && r > -4096)) len = outLen < 0 ? (size_t)r : (size_t)outLen;
  if (len > maxOut) len = maxOut; /* never: the kernel writes at most what it was asked */
  rec->out_addr = (uint64_t)out;
  rec->out_len = (uint32_t)len;
  rec->reserved = 0;
  copy(rec + 1, out, len);
  rec->size = (uint32_t)(sizeof *rec + ((len + 7) & ~(size_t)7));
  barrier();
  b->used += rec->size;
  barrier();
  b->in_call = 0;
  *ret = r;
  return 1;
}

/* Whether `fd` is a regular file, whose reads do not wait for another process. */
static int regularFile(int fd) {
  struct stat st;
  long r;
  return buffered(SYS_fstat, fd, (long)&st, 0, 0, &st, sizeof st, sizeof st, &r) && r == 0 &&
         S_ISREG(st.st_mode);
}

EXPORT ssize_t read(int fd, void* buf, size_t count) {
  long r;
  if (count <= RWD_MAX_OUTPUT && regularFile(fd) &&
      buffered(SYS_read, fd, (long)buf, (long)count, 0, buf, -1, count, &r)) {
    return fail(r);
  }
  NEXT(ssize_t, "read", int, void*, size_t);
  return next ? next(fd, buf, count) : fail(traced(SYS_read, fd, (long)buf, (long)count, 0, 0, 0));
}

EXPORT ssize_t pread64(int fd, void* buf, size_t count, off64_t offset) {
  long r;
  if (count <= RWD_MAX_OUTPUT && regularFile(fd) &&
      buffered(SYS_pread64, fd, (long)buf, (long)count, offset, buf, -1, count, &r)) {
    return fail(r);
  }
  NEXT(ssize_t, "pread64", int, void*, size_t, off64_t);
  return next ? next(fd, buf, count, offset)
              : fail(traced(SYS_pread64, fd, (long)buf, (long)count, offset, 0, 0));
}

EXPORT ssize_t pread(int fd, void* buf, size_t count, off_t offset) {
  return pread64(fd, buf, count, offset);
}

EXPORT off_t lseek(int fd, off_t offset, int whence) {
  long r;
  if (regularFile(fd) && buffered(SYS_lseek, fd, offset, whence, 0, NULL, 0, 0, &r)) {
    return fail(r);
  }
  NEXT(off_t, "lseek", int, off_t, int);
  return next ? next(fd, offset, whence) : fail(traced(SYS_lseek, fd, offset, whence, 0, 0, 0));
}

EXPORT off64_t lseek64(int fd, off64_t offset, int whence) { return lseek(fd, offset, whence); }

static int statAt(int dirfd, const char* path, struct stat* st, int flags) {
  long r;
  if (buffered(SYS_newfstatat, dirfd, (long)path, (long)st, flags, st, sizeof *st, sizeof *st,
               &r)) {
    return (int)fail(r);
  }
  NEXT(int, "fstatat", int, const char*, struct stat*, int);
  return next ? next(dirfd, path, st, flags)
              : (int)fail(traced(SYS_newfstatat, dirfd, (long)path, (long)st, flags, 0, 0));
}

EXPORT int fstat(int fd, struct stat* st) {
  long r;
  if (buffered(SYS_fstat, fd, (long)st, 0, 0, st, sizeof *st, sizeof *st, &r)) return (int)fail(r);
  NEXT(int, "fstat", int, struct stat*);
  return next ? next(fd, st) : (int)fail(traced(SYS_fstat, fd, (long)st, 0, 0, 0, 0));
}

/* On x86-64 struct stat64 is struct stat. */
_Static_assert(sizeof(struct stat64) == sizeof(struct stat), "one stat");
EXPORT int fstat64(int fd, struct stat64* st) { return fstat(fd, (struct stat*)st); }
EXPORT int stat(const char* path, struct stat* st) { return statAt(AT_FDCWD, path, st, 0); }
EXPORT int stat64(const char* path, struct stat64* st) {
  return statAt(AT_FDCWD, path, (struct stat*)st, 0);
}
EXPORT int lstat(const char* path, struct stat* st) {
  return statAt(AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW);
}
EXPORT int lstat64(const char* path, struct stat64* st) {
  return statAt(AT_FDCWD, path, (struct stat*)st, AT_SYMLINK_NOFOLLOW);
}
EXPORT int fstatat(int dirfd, const char* path, struct stat* st, int flags) {
  return statAt(dirfd, path, st, flags);
}
EXPORT int fstatat64(int dirfd, const char* path, struct stat64* st, int flags) {
  return statAt(dirfd, path, (struct stat*)st, flags);
}

/* Opens and closes of regular files and directories, which do not wait for another process: a
 * FIFO's open waits for its other end, a device's may wait for the device, a socket's close may
 * linger. What the path or descriptor is comes from a buffered stat first; anything else, or a
 * stat that fails (but a path O_CREAT will make), goes to libc's. O_PATH opens nothing. */
static int opensWithoutWaiting(int dirfd, const char* path, int flags) {
  if (flags & O_PATH) return 1;
  struct stat st;
  long r;
  const long follow = (flags & O_NOFOLLOW) ? AT_SYMLINK_NOFOLLOW : 0;
  if (!buffered(SYS_newfstatat, dirfd, (long)path, (long)&st, follow, &st, sizeof st, sizeof st,
                &r)) {
    return 0;
  }
  if (r == -ENOENT) return (flags & O_CREAT) != 0;
  return r == 0 && (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode));
}

static int openAt(int dirfd, const char* path, int flags, mode_t mode) {
  long r;
  if (opensWithoutWaiting(dirfd, path, flags) &&
      buffered(SYS_openat, dirfd, (long)path, flags, mode, NULL, 0, 0, &r)) {
    return (int)fail(r);
  }
  NEXT(int, "openat", int, const char*, int, ...);
  return next ? next(dirfd, path, flags, mode)
              : (int)fail(traced(SYS_openat, dirfd, (long)path, flags, mode, 0, 0));
}

/* The mode argument is there only with O_CREAT or O_TMPFILE, as libc's open reads it. */
#define MODE_ARG(flags, last)              \
  mode_t mode = 0;                         \
  if ((flags) & (O_CREAT | __O_TMPFILE)) { \
    va_list ap;                            \
    va_start(ap, last);                    \
    mode = va_arg(ap, mode_t);             \
    va_end(ap);                            \
  }

EXPORT int open(const char* path, int flags, ...) {
  MODE_ARG(flags, flags);
  return openAt(AT_FDCWD, path, flags, mode);
}
EXPORT int open64(const char* path, int flags, ...) {
  MODE_ARG(flags, flags);
  return openAt(AT_FDCWD, path, flags, mode);
}
EXPORT int openat(int dirfd, const char* path, int flags, ...) {
  MODE_ARG(flags, flags);
  return openAt(dirfd, path, flags, mode);
}
EXPORT int openat64(int dirfd, const char* path, int flags, ...) {
  MODE_ARG(flags, flags);
  return openAt(dirfd, path, flags, mode);
}

EXPORT int close(int fd) {
  struct stat st;
  long r;
  if (buffered(SYS_fstat, fd, (long)&st, 0, 0, &st, sizeof st, sizeof st, &r) && r == 0 &&
      (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) &&
      buffered(SYS_close, fd, 0, 0, 0, NULL, 0, 0, &r)) {
    return (int)fail(r);
  }
  NEXT(int, "close", int);
  return next ? next(fd) : (int)fail(traced(SYS_close, fd, 0, 0, 0, 0, 0));
}

/* A path's permissions: a lookup, as stat's (build tools ask for every program on the PATH). */
EXPORT int access(const char* path, int mode) {
  long r;
  if (buffered(SYS_access, (long)path, mode, 0, 0, NULL, 0, 0, &r)) return (int)fail(r);
  NEXT(int, "access", const char*, int);
  return next ? next(path, mode) : (int)fail(traced(SYS_access, (long)path, mode, 0, 0, 0, 0));
}

/* The process's credentials: queries that never wait (a shell asks for them at every start). */
#define CREDENTIAL(name, type)                                            \
  EXPORT type name(void) {                                                \
    long r;                                                               \
    if (buffered(SYS_##name, 0, 0, 0, 0, NULL, 0, 0, &r)) return (type)r; \
    return (type)traced(SYS_##name, 0, 0, 0, 0, 0, 0);                    \
  }
CREDENTIAL(getuid, uid_t)
CREDENTIAL(geteuid, uid_t)
CREDENTIAL(getgid, gid_t)
CREDENTIAL(getegid, gid_t)

EXPORT int clock_gettime(clockid_t clock, struct timespec* tp) {
  long r;
  if (buffered(SYS_clock_gettime, clock, (long)tp, 0, 0, tp, sizeof *tp, sizeof *tp, &r)) {
    return (int)fail(r);
  }
  NEXT(int, "clock_gettime", clockid_t, struct timespec*);
  return next ? next(clock, tp) : (int)fail(traced(SYS_clock_gettime, clock, (long)tp, 0, 0, 0, 0));
}

EXPORT int gettimeofday(struct timeval* restrict tv, void* restrict tz) {
  long r;
  if (!tz && buffered(SYS_gettimeofday, (long)tv, 0, 0, 0, tv, sizeof *tv, sizeof *tv, &r)) {
    return (int)fail(r);
  }
  NEXT(int, "gettimeofday", struct timeval*, void*);
  return next ? next(tv, tz) : (int)fail(traced(SYS_gettimeofday, (long)tv, (long)tz, 0, 0, 0, 0));
}

EXPORT time_t time(time_t* tloc) {
  long r;
  if (buffered(SYS_time, (long)tloc, 0, 0, 0, tloc, sizeof *tloc, sizeof *tloc, &r)) return r;
  NEXT(time_t, "time", time_t*);
  return next ? next(tloc) : traced(SYS_time, (long)tloc, 0, 0, 0, 0, 0);
}

/* libc's syscall() for the numbers it may buffer: queries without arguments or output, which
 * detach_threads-like programs make in a loop. glibc's syscall() is assembly that touches no
 * vector or x87 register, and programs count on it (rr's sigreturn test keeps values in %xmm
 * across syscall(SYS_gettid)): this one is assembly too, and its C part is general-regs-only and
 * calls nothing of libc (dlsym would). Every other number goes to the kernel as glibc's does. */
__attribute__((used)) static int bufferedSyscall(long nr, long* ret) {
  return buffered(nr, 0, 0, 0, 0, NULL, 0, 0, ret);
}
#define STR_(x) #x
#define STR(x) STR_(x)
__asm__(".text\n"
        ".globl syscall\n"
        ".type syscall, @function\n"
        "syscall:\n"
        "  .cfi_startproc\n"
        "  cmp $" STR(SYS_gettid) ", %rdi\n"
        "  je 1f\n"
        "  cmp $" STR(SYS_getpid) ", %rdi\n"
        "  je 1f\n"
        "  cmp $" STR(SYS_getppid) ", %rdi\n"
        "  jne 2f\n"
        "1:\n" /* the arguments kept for the kernel's way, and a word for the result */
        "  push %rdi\n"
        "  .cfi_adjust_cfa_offset 8\n"
        "  push %rsi\n"
        "  .cfi_adjust_cfa_offset 8\n"
        "  push %rdx\n"
        "  .cfi_adjust_cfa_offset 8\n"
        "  push %rcx\n"
        "  .cfi_adjust_cfa_offset 8\n"
        "  push %r8\n"
        "  .cfi_adjust_cfa_offset 8\n"
        "  push %r9\n"
        "  .cfi_adjust_cfa_offset 8\n"
        "  sub $8, %rsp\n"
        "  .cfi_adjust_cfa_offset 8\n"
        "  mov %rsp, %rsi\n"
        "  call bufferedSyscall\n"
        "  test %eax, %eax\n" /* the flags survive mov, lea and pop */
        "  mov (%rsp), %rax\n"
        "  lea 8(%rsp), %rsp\n"
        "  .cfi_adjust_cfa_offset -8\n"
        "  pop %r9\n"
        "  .cfi_adjust_cfa_offset -8\n"
        "  pop %r8\n"
        "  .cfi_adjust_cfa_offset -8\n"
        "  pop %rcx\n"
        "  .cfi_adjust_cfa_offset -8\n"
        "  pop %rdx\n"
        "  .cfi_adjust_cfa_offset -8\n"
        "  pop %rsi\n"
        "  .cfi_adjust_cfa_offset -8\n"
        "  pop %rdi\n"
        "  .cfi_adjust_cfa_offset -8\n"
        "  jnz 3f\n"
        "2:\n"
        "  mov %rdi, %rax\n"
        "  mov %rsi, %rdi\n"
        "  mov %rdx, %rsi\n"
        "  mov %rcx, %rdx\n"
        "  mov %r8, %r10\n"
        "  mov %r9, %r8\n"
        "  mov 8(%rsp), %r9\n"
        "  syscall\n"
        "3:\n"
        "  cmp $-4095, %rax\n"
        "  jae 4f\n"
        "  ret\n"
        "4:\n"
        "  neg %rax\n"
        "  push %rax\n" /* also aligns the stack for the call */
        "  .cfi_adjust_cfa_offset 8\n"
        "  call __errno_location@PLT\n"
        "  pop %rcx\n"
        "  .cfi_adjust_cfa_offset -8\n"
        "  mov %ecx, (%rax)\n"
        "  or $-1, %rax\n"
        "  ret\n"
        "  .cfi_endproc\n"
        ".size syscall, .-syscall\n");

/* std::random_device's "default" source is the rdrand or rdseed instruction, which cannot be
 * trapped without CPUID faulting: replay would draw other numbers. Every token that names the CPU's
 * generator becomes "/dev/urandom", whose reads are syscalls (rr's preload does the same). The
 * token is a std::__cxx11::string: {data, length, SSO buffer of 16}, a stable ABI. libstdc++'s
 * other entry points (the pre-C++11 string ABI, _M_init_pretr1) call this one through the PLT. */
struct cxx11_string {
  const char* data;
  size_t length;
  char local[16];
};

static int cpuToken(const struct cxx11_string* token) {
  static const char* const names[] = {"default", "rdrand", "rdrnd", "rdseed", "hw", "hardware"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    if (token->length == strlen(names[i]) && !memcmp(token->data, names[i], token->length)) {
      return 1;
    }
  }
  return 0;
}

EXPORT void _ZNSt13random_device7_M_initERKNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEE(
    void* self, const struct cxx11_string* token) {
  static const char name[] =
      "_ZNSt13random_device7_M_initERKNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEE";
  static void (*next)(void*, const struct cxx11_string*);
  if (!next) next = (void (*)(void*, const struct cxx11_string*))dlsym(RTLD_NEXT, name);
  if (!next) { /* a libstdc++ loaded with RTLD_LOCAL, after this library */
    void* lib = dlopen("libstdc++.so.6", RTLD_NOW | RTLD_NOLOAD);
    if (lib) next = (void (*)(void*, const struct cxx11_string*))dlsym(lib, name);
  }
  if (!next) {
    static const char msg[] = "rewind: std::random_device: libstdc++'s _M_init not found\n";
    traced(SYS_write, 2, (long)msg, sizeof msg - 1, 0, 0, 0);
    __builtin_trap();
  }
  struct cxx11_string urandom = {urandom.local, 12, "/dev/urandom"};
  next(self, cpuToken(token) ? &urandom : token);
}

/* The main thread's buffer is set up at once: the TSC hook needs the recorder to know the library
 * is there before the program's first rdtsc. On a stack of its own: the program's, where main's
 * frame will be, keeps what it held without the library (a program may read it uninitialized). */
__attribute__((used)) static void start(void) { threadBuffer(); }
static char startStack[16384] __attribute__((aligned(16), used));
void rwd_start(void);
__asm__(".text\n"
        ".type rwd_start, @function\n"
        "rwd_start:\n"
        "  mov %rsp, %rax\n"
        "  lea startStack+16384(%rip), %rsp\n"
        "  push %rax\n"
        "  sub $8, %rsp\n"
        "  call start\n"
        "  add $8, %rsp\n"
        "  pop %rsp\n"
        "  ret\n"
        ".size rwd_start, .-rwd_start\n");
__attribute__((section(".init_array"), used)) static void (*const startAtLoad)(void) = rwd_start;

INLINE uint64_t rdtsc(void) {
  uint32_t lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return (uint64_t)hi << 32 | lo;
}

/* The TSC for a patched rdtsc. Recording: the recorder's clock (rwd_control), from a
 * CLOCK_MONOTONIC_RAW read from the trampoline (no stop), kept in the buffer. Replay: the next
 * value the replayer put there (RWD_SYS_TSC_NEXT when there is none left). Without a buffer: a
 * real rdtsc, which traps into the recorder (or replayer) as an unpatched one does. */
__attribute__((used, section("rwd_tsc_text"))) uint64_t rwd_tsc_value(void) {
  struct rwd_buffer_header* b = threadBuffer();
  if (!b || !control.tsc_per_ns) return rdtsc();
  struct rwd_tsc_record* rec;
  const uint32_t need = sizeof *rec;
  if (b->size - b->used < need) traced(RWD_SYS_BUFFER_FLUSH, 0, 0, 0, 0, 0, 0); /* emptied */
  if (*(volatile uint32_t*)RWD_REPLAYING) {
    if (!b->tsc_left) traced(RWD_SYS_TSC_NEXT, (long)b, 0, 0, 0, 0, 0);
    if (!b->tsc_left || b->size - b->used < need) return rdtsc(); /* replay has diverged */
    rec = (struct rwd_tsc_record*)((char*)b + b->used);
    uint64_t v = rec->tsc;
    b->used += need;
    b->tsc_left--;
    return v;
  }
  b->in_call = 1;
  barrier();
  struct timespec ts;
  if (b->size - b->used < need ||
      untraced(SYS_clock_gettime, CLOCK_MONOTONIC_RAW, (long)&ts, 0, 0)) {
    b->in_call = 0;
    return rdtsc();
  }
  const int64_t ns = ts.tv_sec * 1000000000ll + ts.tv_nsec - (int64_t)control.ns_base;
  const uint64_t v =
      control.tsc_base + (uint64_t)(((__int128)ns * (__int128)control.tsc_per_ns) >> 32);
  rec = (struct rwd_tsc_record*)((char*)b + b->used);
  rec->size = need;
  rec->nr = RWD_TSC_RECORD;
  rec->tsc = v;
  barrier();
  b->used += need;
  barrier();
  b->in_call = 0;
  return v;
}

/* Called by a patched rdtsc's stub, which skipped the red zone: rwd_tsc_value's result in edx:eax
 * as rdtsc leaves it, every other register and the arithmetic flags unchanged (the direction flag
 * clear, as at any call). Not pushf/popf: a recorder stepping through here would leave its trap
 * flag set in the program. */
__asm__(".pushsection rwd_tsc_text, \"ax\", @progbits\n"
        ".globl rwd_tsc_hook\n"
        ".hidden rwd_tsc_hook\n"
        ".type rwd_tsc_hook, @function\n"
        "rwd_tsc_hook:\n"
        "  push %rcx\n"
        "  push %rsi\n"
        "  push %rdi\n"
        "  push %r8\n"
        "  push %r9\n"
        "  push %r10\n"
        "  push %r11\n"
        "  lahf\n" /* SF ZF AF PF CF in %ah */
        "  seto %al\n"
        "  push %rax\n"
        "  push %rbp\n"
        "  mov %rsp, %rbp\n"
        "  and $-16, %rsp\n"
        "  call rwd_tsc_value\n"
        "  mov %rbp, %rsp\n"
        "  pop %rbp\n"
        "  mov %rax, %rdx\n"
        "  shr $32, %rdx\n"
        "  mov %eax, %eax\n"
        "  xchg %rax, (%rsp)\n"
        "  add $0x7f, %al\n" /* OF as it was */
        "  sahf\n"
        "  pop %rax\n"
        "  pop %r11\n"
        "  pop %r10\n"
        "  pop %r9\n"
        "  pop %r8\n"
        "  pop %rdi\n"
        "  pop %rsi\n"
        "  pop %rcx\n"
        "  ret\n"
        ".size rwd_tsc_hook, .-rwd_tsc_hook\n"
        ".popsection\n");
