/* Syscall-heavy workload: reads a file in 4 KiB read(2) calls and prints a checksum. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  int fd = open(argv[1], O_RDONLY);
  if (fd < 0) {
    perror("open");
    return 1;
  }
  static unsigned char buf[4096];
  uint64_t total = 0, sum = 0, reads = 0;
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) {
    reads++;
    total += (uint64_t)n;
    for (ssize_t i = 0; i < n; i += 64) sum = sum * 31 + buf[i];
  }
  if (n < 0) {
    perror("read");
    return 1;
  }
  close(fd);
  printf("%llu bytes in %llu reads, sum=%llu\n", (unsigned long long)total, (unsigned long long)reads,
         (unsigned long long)sum);
  return 0;
}
