/* Syscall-light workload: a CPU-bound xorshift loop (about 1 s natively by default). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
  uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 550000000ULL;
  uint64_t x = 88172645463325252ULL, acc = 0;
  for (uint64_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    acc += x >> 60;
  }
  printf("%llu iterations, acc=%llu\n", (unsigned long long)n, (unsigned long long)acc);
  return 0;
}
