/* A small HTTP/1.1 server with epoll, for the bench's server rows: listens on 127.0.0.1:PORT,
 * answers every request on a connection kept alive, and exits after COUNT answers, printing how
 * many it served. usage: http_server PORT COUNT */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static const char kReply[] = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nhello\n";

int main(int argc, char** argv) {
  if (argc < 3) return 2;
  long count = atol(argv[2]);
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[1])),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (lfd < 0 || bind(lfd, (struct sockaddr*)&a, sizeof a) < 0 || listen(lfd, 64) < 0) {
    perror("listen");
    return 1;
  }
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  long served = 0;
  char buf[4096];
  while (served < count) {
    struct epoll_event got[16];
    int n = epoll_wait(ep, got, 16, -1);
    for (int i = 0; i < n; i++) {
      int fd = got[i].data.fd;
      if (fd == lfd) {
        int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
        if (c < 0) continue;
        struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
        epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
        continue;
      }
      ssize_t r = read(fd, buf, sizeof buf);
      if (r <= 0) {
        if (r < 0 && errno == EAGAIN) continue;
        close(fd);
        continue;
      }
      /* One reply per request: a client sends the next only after its answer. */
      for (ssize_t k = 3; k < r; k++) {
        if (memcmp(buf + k - 3, "\r\n\r\n", 4) == 0) {
          if (write(fd, kReply, sizeof kReply - 1) < 0) break;
          served++;
        }
      }
    }
  }
  printf("served %ld\n", served);
  return 0;
}
