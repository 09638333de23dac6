/*
 * oflguest: the services of an offlink QEMU guest (built with gcc -static into the guest's initramfs
 * by guest-image.ts). One process, one poll loop, no threads: its state lives in guest RAM only, so
 * a counter that keeps counting across a live migration proves the guest was moved, not restarted.
 *
 *   UDP  7      echo: every datagram goes back to its sender (probe reflector for tests).
 *   TCP  5000   line protocol: "count" -> "counter N boot B uptime_ms U now T sent P recv R ssent S
 *               srecv Q sent4 P4 recv4 R4" (T: guest-monotonic ms; P/R/S/Q: the traffic's counts, P4/R4
 *               its IPv4 probes'); "traffic PEER RATE KBPS PAYLOAD [PEER4]" starts the lab's traffic
 *               to PEER (and, dual-stack, a second probe sequence over IPv4 to PEER4); "stop" stops it;
 *               "dump" -> one JSON line with what the traffic recorded (times in guest-monotonic ms;
 *               "ipv4" holds the IPv4 probes'); any other line is echoed back.
 *   UDP 40001   the lab's probes (src/lab/endpoint.ts): "OFLP", u32 seq, f64 send time; arrivals of
 *               the peer's probes are recorded, those from an IPv4 source apart (dual-stack lab).
 *   UDP 40000   the lab's stream: "OFLS" + u32 n + filler, sent to PEER:40000.
 *
 * Every socket is AF_INET6 with IPV6_V6ONLY off, so a dual-stack guest (offlink.addr4=) serves IPv4 on
 * the same ports: an IPv4 peer shows up as ::ffff:a.b.c.d and is answered over IPv4. PEER may be IPv4.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define ECHO_PORT 7
#define CONTROL_PORT 5000
#define PROBE_PORT 40001
#define STREAM_PORT 40000
#define MAX_CLIENTS 16
#define MAX_RECORDS (1 << 20)
#define TICK_MS 10.0
#define PROBE_MAGIC 0x4f464c50u
#define STREAM_MAGIC 0x4f464c53u

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

struct client {
  int fd;
  size_t len;
  char buf[512];
};

/* One family's probes: those sent to `peer` and those received from it. */
struct probes {
  int on;
  struct sockaddr_in6 peer;
  uint32_t sent, send_errors;
  double *send_times;
  uint32_t *recv_seq;
  double *recv_at;
  uint32_t recv_n;
};

struct traffic {
  int on;
  struct sockaddr_in6 peer;
  double rate, stream_rate, t0;
  size_t payload;
  uint32_t stream_sent;
  struct probes p6, p4;
  uint32_t stream_received;
  uint64_t stream_bytes;
};

static uint64_t counter;
static char boot_id[17];
static double started;
static struct traffic tr;
static struct client clients[MAX_CLIENTS];

/* An IPv6 address, or an IPv4 one as its IPv4-mapped form (RFC 4291 §2.5.5.2), which the sockets take. */
static int parse_peer(const char *text, struct in6_addr *out) {
  if (inet_pton(AF_INET6, text, out) == 1) return 1;
  struct in_addr v4;
  if (inet_pton(AF_INET, text, &v4) != 1) return 0;
  memset(out, 0, sizeof *out);
  out->s6_addr[10] = out->s6_addr[11] = 0xff;
  memcpy(&out->s6_addr[12], &v4, sizeof v4);
  return 1;
}

static int udp_socket(int port) {
  int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK, 0);
  int zero = 0, one = 1;
  setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = in6addr_any};
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) {
    perror("oflguest: bind udp");
    exit(1);
  }
  return fd;
}

static int tcp_listener(int port) {
  int fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int zero = 0, one = 1;
  setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(port), .sin6_addr = in6addr_any};
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 8) < 0) {
    perror("oflguest: listen tcp");
    exit(1);
  }
  return fd;
}

/* Blocking write of the whole buffer (replies are small; a dump happens with the traffic stopped). */
static void write_all(int fd, const char *p, size_t n) {
  int flags = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    p += w;
    n -= (size_t)w;
  }
  fcntl(fd, F_SETFL, flags);
}

static void reply(int fd, const char *fmt, ...) {
  char out[600];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(out, sizeof out, fmt, ap);
  va_end(ap);
  if (n > 0) write_all(fd, out, (size_t)n < sizeof out ? (size_t)n : sizeof out - 1);
}

/* `"probe":{...},"received":{...}` of one family's probes. */
static void dump_probes(FILE *f, const struct probes *p) {
  fprintf(f, "\"probe\":{\"sent\":%u,\"sendErrors\":%u,\"sendTimes\":[", p->sent, p->send_errors);
  uint32_t kept = p->sent < MAX_RECORDS ? p->sent : MAX_RECORDS;
  for (uint32_t i = 0; i < kept; i++) fprintf(f, i ? ",%.3f" : "%.3f", p->send_times[i]);
  fprintf(f, "]},\"received\":{\"seq\":[");
  for (uint32_t i = 0; i < p->recv_n; i++) fprintf(f, i ? ",%u" : "%u", p->recv_seq[i]);
  fprintf(f, "],\"at\":[");
  for (uint32_t i = 0; i < p->recv_n; i++) fprintf(f, i ? ",%.3f" : "%.3f", p->recv_at[i]);
  fprintf(f, "]}");
}

static void dump(int fd) {
  char *buf = NULL;
  size_t size = 0;
  FILE *f = open_memstream(&buf, &size);
  fprintf(f, "{\"role\":\"guest\",\"now\":%.3f,", now_ms());
  dump_probes(f, &tr.p6);
  if (tr.p4.on) {
    fprintf(f, ",\"ipv4\":{");
    dump_probes(f, &tr.p4);
    fprintf(f, "}");
  }
  fprintf(f, ",\"stream\":{\"sent\":%u,\"received\":%u,\"receivedBytes\":%llu}}\n", tr.stream_sent,
          tr.stream_received, (unsigned long long)tr.stream_bytes);
  fclose(f);
  write_all(fd, buf, size);
  free(buf);
}

/* Start a family's probes to `peer` afresh. */
static void reset_probes(struct probes *p, const struct in6_addr *peer) {
  memset(&p->peer, 0, sizeof p->peer);
  p->peer.sin6_family = AF_INET6;
  p->peer.sin6_addr = *peer;
  p->sent = p->send_errors = p->recv_n = 0;
  p->on = 1;
}

static void command(struct client *c, char *line) {
  char peer[64], peer4[64];
  double rate, kbps;
  unsigned payload;
  if (strcmp(line, "count") == 0 || strcmp(line, "c") == 0) {
    double t = now_ms();
    reply(c->fd, "counter %llu boot %s uptime_ms %.0f now %.3f sent %u recv %u ssent %u srecv %u sent4 %u recv4 %u\n",
          (unsigned long long)counter, boot_id, t - started, t, tr.p6.sent, tr.p6.recv_n, tr.stream_sent,
          tr.stream_received, tr.p4.sent, tr.p4.recv_n);
  } else if (sscanf(line, "traffic %63s %lf %lf %u %63s", peer, &rate, &kbps, &payload, peer4) >= 4) {
    int dual = sscanf(line, "traffic %*s %*f %*f %*u %63s", peer4) == 1;
    struct in6_addr a6, a4;
    if (!parse_peer(peer, &a6) || (dual && (!parse_peer(peer4, &a4) || !IN6_IS_ADDR_V4MAPPED(&a4))) ||
        rate <= 0 || payload < 16 || payload > 1452) {
      reply(c->fd, "error bad traffic arguments\n");
      return;
    }
    memset(&tr.peer, 0, sizeof tr.peer);
    tr.peer.sin6_family = AF_INET6;
    tr.peer.sin6_addr = a6;
    reset_probes(&tr.p6, &a6);
    if (dual) reset_probes(&tr.p4, &a4);
    else tr.p4.on = 0;
    tr.rate = rate;
    tr.payload = payload;
    tr.stream_rate = kbps * 1000.0 / (payload * 8.0);
    tr.stream_sent = tr.stream_received = 0;
    tr.stream_bytes = 0;
    tr.t0 = now_ms();
    tr.on = 1;
    reply(c->fd, "ok traffic\n");
  } else if (strcmp(line, "stop") == 0) {
    tr.on = 0;
    reply(c->fd, "ok stopped\n");
  } else if (strcmp(line, "dump") == 0) {
    dump(c->fd);
  } else {
    reply(c->fd, "%s\n", line);
  }
}

static void client_read(struct client *c) {
  ssize_t r = read(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
  if (r <= 0) {
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
    close(c->fd);
    c->fd = -1;
    return;
  }
  c->len += (size_t)r;
  c->buf[c->len] = 0;
  char *nl;
  while (c->fd >= 0 && (nl = memchr(c->buf, '\n', c->len)) != NULL) {
    *nl = 0;
    if (nl > c->buf && nl[-1] == '\r') nl[-1] = 0;
    command(c, c->buf);
    size_t used = (size_t)(nl + 1 - c->buf);
    memmove(c->buf, nl + 1, c->len - used);
    c->len -= used;
  }
  if (c->len == sizeof c->buf - 1) c->len = 0; /* a line too long: drop it */
}

/* The probes of one family due by `due`: "OFLP", u32 seq, f64 send time (big-endian). */
static void send_probes(int probe_fd, struct probes *pr, uint32_t due) {
  if (!pr->on) return;
  while (pr->sent < due) {
    unsigned char p[16];
    uint32_t seq = htonl(pr->sent), magic = htonl(PROBE_MAGIC);
    double st = now_ms();
    uint64_t bits;
    memcpy(&bits, &st, 8);
    for (int i = 0; i < 8; i++) p[8 + i] = (unsigned char)(bits >> (56 - 8 * i));
    memcpy(p, &magic, 4);
    memcpy(p + 4, &seq, 4);
    pr->peer.sin6_port = htons(PROBE_PORT);
    if (sendto(probe_fd, p, sizeof p, 0, (struct sockaddr *)&pr->peer, sizeof pr->peer) < 0) pr->send_errors++;
    if (pr->sent < MAX_RECORDS) pr->send_times[pr->sent] = st;
    pr->sent++;
  }
}

static void send_due(int probe_fd, int stream_fd, double t) {
  if (!tr.on) return;
  uint32_t due = (uint32_t)((t - tr.t0) * tr.rate / 1000.0) + 1;
  send_probes(probe_fd, &tr.p6, due);
  send_probes(probe_fd, &tr.p4, due);
  if (tr.stream_rate <= 0) return;
  uint32_t sdue = (uint32_t)((t - tr.t0) * tr.stream_rate / 1000.0) + 1;
  static unsigned char s[1500];
  while (tr.stream_sent < sdue) {
    uint32_t magic = htonl(STREAM_MAGIC), n = htonl(tr.stream_sent);
    memset(s, 0x5a, tr.payload);
    memcpy(s, &magic, 4);
    memcpy(s + 4, &n, 4);
    tr.peer.sin6_port = htons(STREAM_PORT);
    sendto(stream_fd, s, tr.payload, 0, (struct sockaddr *)&tr.peer, sizeof tr.peer);
    tr.stream_sent++;
  }
}

static double next_due(double t) {
  double next = t + TICK_MS;
  if (tr.on) {
    double p = tr.t0 + tr.p6.sent * 1000.0 / tr.rate;
    if (p < next) next = p;
    if (tr.stream_rate > 0) {
      double s = tr.t0 + tr.stream_sent * 1000.0 / tr.stream_rate;
      if (s < next) next = s;
    }
  }
  return next;
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, NULL, _IOLBF, 0);
  unsigned char rnd[8] = {0};
  int ur = open("/dev/urandom", O_RDONLY);
  if (ur >= 0) {
    if (read(ur, rnd, sizeof rnd) != sizeof rnd) rnd[0] = (unsigned char)getpid();
    close(ur);
  }
  for (int i = 0; i < 8; i++) sprintf(boot_id + 2 * i, "%02x", rnd[i]);
  /* calloc'd pages stay untouched (and out of the migration stream) until a probe is recorded there */
  for (struct probes *p = &tr.p6; p; p = p == &tr.p6 ? &tr.p4 : NULL) {
    p->send_times = calloc(MAX_RECORDS, sizeof(double));
    p->recv_seq = calloc(MAX_RECORDS, sizeof(uint32_t));
    p->recv_at = calloc(MAX_RECORDS, sizeof(double));
  }
  for (int i = 0; i < MAX_CLIENTS; i++) clients[i].fd = -1;

  int echo_fd = udp_socket(ECHO_PORT), probe_fd = udp_socket(PROBE_PORT), stream_fd = udp_socket(STREAM_PORT);
  int listen_fd = tcp_listener(CONTROL_PORT);
  started = now_ms();
  double next_tick = started + TICK_MS, next_log = started + 10000;
  printf("offlink-guest: ready boot %s\n", boot_id);

  for (;;) {
    struct pollfd fds[4 + MAX_CLIENTS];
    int n = 0;
    fds[n++] = (struct pollfd){.fd = echo_fd, .events = POLLIN};
    fds[n++] = (struct pollfd){.fd = probe_fd, .events = POLLIN};
    fds[n++] = (struct pollfd){.fd = stream_fd, .events = POLLIN};
    fds[n++] = (struct pollfd){.fd = listen_fd, .events = POLLIN};
    for (int i = 0; i < MAX_CLIENTS; i++)
      if (clients[i].fd >= 0) fds[n++] = (struct pollfd){.fd = clients[i].fd, .events = POLLIN};
    double t = now_ms();
    double wait = next_due(t) - t;
    if (wait < 0) wait = 0;
    struct timespec ts = {.tv_sec = (time_t)(wait / 1000), .tv_nsec = (long)((wait - (time_t)(wait / 1000) * 1000) * 1e6)};
    ppoll(fds, (nfds_t)n, &ts, NULL);
    t = now_ms();

    while (t >= next_tick) {
      counter++;
      next_tick += TICK_MS;
    }
    if (t >= next_log) {
      printf("offlink-guest: counter %llu\n", (unsigned long long)counter);
      next_log = t + 10000;
    }
    unsigned char buf[2048];
    struct sockaddr_in6 from;
    socklen_t fl;
    ssize_t r;
    for (;;) {
      fl = sizeof from;
      r = recvfrom(echo_fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
      if (r < 0) break;
      sendto(echo_fd, buf, (size_t)r, 0, (struct sockaddr *)&from, fl);
    }
    for (;;) {
      fl = sizeof from;
      r = recvfrom(probe_fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
      if (r < 0) break;
      uint32_t magic, seq;
      if (r < 16) continue;
      memcpy(&magic, buf, 4);
      memcpy(&seq, buf + 4, 4);
      /* an IPv4 source shows up IPv4-mapped on the dual-stack socket */
      struct probes *pr = IN6_IS_ADDR_V4MAPPED(&from.sin6_addr) ? &tr.p4 : &tr.p6;
      if (ntohl(magic) != PROBE_MAGIC || pr->recv_n >= MAX_RECORDS) continue;
      pr->recv_seq[pr->recv_n] = ntohl(seq);
      pr->recv_at[pr->recv_n] = t;
      pr->recv_n++;
    }
    for (;;) {
      r = recv(stream_fd, buf, sizeof buf, 0);
      if (r < 0) break;
      uint32_t magic;
      if (r < 4) continue;
      memcpy(&magic, buf, 4);
      if (ntohl(magic) != STREAM_MAGIC) continue;
      tr.stream_received++;
      tr.stream_bytes += (uint64_t)r;
    }
    for (;;) {
      int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK);
      if (fd < 0) break;
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      int slot = -1;
      for (int i = 0; i < MAX_CLIENTS; i++)
        if (clients[i].fd < 0) { slot = i; break; }
      if (slot < 0) { close(fd); continue; }
      clients[slot].fd = fd;
      clients[slot].len = 0;
    }
    for (int i = 4; i < n; i++) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      for (int j = 0; j < MAX_CLIENTS; j++)
        if (clients[j].fd == fds[i].fd) { client_read(&clients[j]); break; }
    }
    send_due(probe_fd, stream_fd, now_ms());
  }
}
