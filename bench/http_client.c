/* The bench's unrecorded HTTP client: COUNT requests one after another on one kept-alive
 * connection to 127.0.0.1:PORT, each waiting for its answer; writes the seconds they took to
 * OUT. It connects as soon as the server listens (a recorded one starts later): connecting is
 * not timed. usage: http_client PORT COUNT OUT */
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char kRequest[] = "GET / HTTP/1.1\r\nHost: bench\r\n\r\n";

int main(int argc, char** argv) {
  if (argc < 4) return 2;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[1])),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  long count = atol(argv[2]);
  int fd = -1;
  for (int tries = 0; fd < 0; tries++) {
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr*)&a, sizeof a) == 0) break;
    close(fd);
    fd = -1;
    if (tries == 60000) {
      perror("connect");
      return 1;
    }
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
  }
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  char buf[4096];
  for (long i = 0; i < count; i++) {
    if (write(fd, kRequest, sizeof kRequest - 1) < 0) return 1;
    /* An answer ends with its body, "hello\n" (the servers' headers differ). */
    for (size_t got = 0; got < 6 || memcmp(buf + got - 6, "hello\n", 6) != 0;) {
      ssize_t r = read(fd, buf + got, sizeof buf - got);
      if (r <= 0 || got + (size_t)r == sizeof buf) {
        fprintf(stderr, "no answer to request %ld\n", i);
        return 1;
      }
      got += (size_t)r;
    }
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  FILE* out = fopen(argv[3], "w");
  if (!out) return 1;
  fprintf(out, "%.6f\n", (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
  return fclose(out) == 0 ? 0 : 1;
}
