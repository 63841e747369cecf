/* The recorder's cost per traced syscall: N getppid(2) calls, which do nothing in the kernel,
 * so recorded, nearly all the time is the two ptrace stops of each. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 100000, ppid = 0;
  for (long i = 0; i < n; i++) ppid = syscall(SYS_getppid);
  printf("%ld getppid calls\n", n);
  return ppid > 0 ? 0 : 1;
}
