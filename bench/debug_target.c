/* A program to debug in the benchmark: about argv[1] seconds of computation in 10 ms rounds,
 * each ending in a small write, after a setup function that runs once near the start.
 * Built with -DOWN_PAGES, setup(), the loop and main() start pages of their own, as in a program with
 * more than a few pages of code; without, they share one page with the PLT. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static uint64_t seed;

#ifdef OWN_PAGES
#define OWN_PAGE __attribute__((aligned(4096)))
#else
#define OWN_PAGE
#endif

OWN_PAGE __attribute__((noinline)) void setup(void) { seed = 0x9e3779b97f4a7c15ULL; }

OWN_PAGE __attribute__((noinline)) static uint64_t round_of_work(uint64_t x) {
  for (int i = 0; i < 8000000; i++) x = x * 6364136223846793005ULL + 1442695040888963407ULL;
  return x;
}

OWN_PAGE int main(int argc, char **argv) {
  int rounds = (argc > 1 ? atoi(argv[1]) : 1) * 100;
  setup();
  uint64_t x = seed;
  for (int r = 0; r < rounds; r++) {
    x = round_of_work(x);
    char line[32];
    int n = snprintf(line, sizeof line, "%d %llu\n", r, (unsigned long long)(x >> 40));
    if (write(2, line, (size_t)n) < 0) return 1;
  }
  printf("%llu\n", (unsigned long long)x);
  return 0;
}
