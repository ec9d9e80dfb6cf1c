/*
 * kl-pty-holder: holds the PTY master of one shell, so the shell outlives runtimed
 * (as containerd-shim / conmon hold a container). Design: runtime/sessions/holder.py.
 *
 *   kl-pty-holder LISTEN_FD MASTER_FD PIDFD SCROLLBACK [SANDBOX SESSION]
 *
 * Started by runtimed (in a new session, all other fds closed) with
 *   LISTEN_FD  a listening AF_UNIX SOCK_SEQPACKET socket bound in runtimed's own
 *              state directory (root-only, 0700): never a path a sandbox can reach;
 *   MASTER_FD  the PTY master of the shell (made by the exec agent or runc);
 *   PIDFD      a pidfd of the shell: readable when it exits. The shell is runtimed's
 *              child, not ours, so runtimed reaps it and tells us the status ('X').
 * SANDBOX and SESSION only name the process for ps.
 *
 * It runs nothing: it copies bytes between the master and its clients, keeps the last
 * SCROLLBACK bytes of output in a ring, and serves them again to each new client (the
 * replay). Two kinds of client:
 *   control  runtimed, connected on LISTEN_FD: root peers only (SO_PEERCRED), one at a
 *            time. A connection made while another is open is closed at once (runtimed's
 *            is closed by the kernel when runtimed dies, so its successor gets in).
 *   direct   at most MAX_DIRECT (8): sockets the control client hands us with 'A' after it
 *            authorized a terminal attach; it gives the other end to the web tier, so a
 *            keystroke and its echo pass through no Python of runtimed. A direct client may
 *            send 'I' and 'R' (ignored when it was attached read-only) and nothing else:
 *            any other type drops that client (we close it); the shell and the other
 *            clients are unaffected. Direct clients outlive the control client (runtimed
 *            dying or restarting does not cut a terminal), and a control client connecting
 *            does not disturb them.
 *
 * Messages (one datagram each, first byte the type; integers in the host's byte order):
 *   control -> holder 'I' input bytes | 'R' u16 rows, u16 cols | 'X' i32 exit code
 *                     (runtimed reaped the shell) | 'Q' quit now (the session is removed
 *                     or its end was collected: close the master, exit; direct clients see
 *                     EOF) | 'A' u8 mode (0 read-write, 1 read-only) carrying exactly one fd
 *                     in SCM_RIGHTS, a connected AF_UNIX SOCK_SEQPACKET socket: serve it as
 *                     a direct client, from the replay on
 *   direct -> holder  'I' and 'R' as above, only
 *   holder -> client  'H' hello (u32 version, u16 rows, u16 cols, u8 exited,
 *                     u8 code known, u16 0, i32 code, u64 bytes ever output, u32 our
 *                     pid, u32 0) first, then
 *                     'O' output (the ring's replay, then live) and, once the shell has
 *                     exited and every byte has been sent, 'E' (u8 code known, i32 code).
 *                     A direct client gets its 'E' only once the code is known ('X'), or
 *                     DIRECT_CODE_WAIT after the exit, or at once when no control client is
 *                     connected: so the web tier normally sees the real code.
 * PROTO_VERSION 2 added 'A' and direct clients; to a control client that never sends 'A'
 * the holder behaves as version 1 did.
 *
 * Trust: fds are taken only from the control client's messages (recvmsg, close-on-exec).
 * Every fd that arrives on any other message than a well-formed 'A' (a 2-byte body, mode
 * 0 or 1, exactly one fd, nothing truncated) is closed at once, and so is the fd of an 'A'
 * that is refused: not a connected unix SOCK_SEQPACKET socket, or MAX_DIRECT direct
 * clients exist already (the web tier's end then sees EOF without a hello). Direct
 * clients are read with plain recv(), no ancillary buffer: an fd a direct client passes
 * is discarded by the kernel and never enters our fd table.
 *
 * Flow control: each client's read position is an offset into the ring. While any
 * client is connected we read the master only into ring space that every connected
 * client has already been sent (room = cap - (total - the slowest client's offset)), so a
 * client that stops reading (runtimed pauses its reader when a browser is slow; a web
 * tier that stops reading its socket) fills its socket, then the ring, and then we stop
 * reading the master: the kernel's PTY buffer fills and the program blocks in write().
 * The one exception: while a direct client is connected, the control client does not hold
 * the ring (runtimed reads slowly when nobody is attached through it, and a terminal handed
 * off must not wait for runtimed's loop); if it falls a whole ring behind, it skips to the
 * oldest byte still held, so runtimed's own copy of the scrollback may miss what it skipped.
 * With no client at all (runtimed is down, no terminal handed off) we keep reading,
 * overwriting the oldest scrollback, at most 20 reads a second. Input is written at once,
 * never behind output; a Ctrl-C overtakes input the program has not read yet.
 *
 * Ends: on 'Q'; or when the shell has exited and no 'Q' came within EXIT_GRACE;
 * or on SIGTERM/SIGKILL. Closing the master hangs up whatever still runs on it.
 *
 * Log: stderr, which runtimed points at <session>.log. What a client can cause once per
 * message (input dropped, an attach refused) is said at most once a minute (complain()).
 *
 * Build: runtime/sandbox/agent/build.sh (gcc -static).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#define PROTO_VERSION 2
#define MSG_MAX (32 * 1024)          /* output bytes per 'O' datagram */
#define READ_CHUNK (64 * 1024)       /* bytes per read of the master */
#define DETACHED_INTERVAL_MS 50      /* with no client: at most 20 reads a second */
#define MAX_INPUT (1024 * 1024)      /* input the program has not read yet */
#define EXIT_GRACE_MS (600 * 1000)   /* after the shell's exit, wait this long for 'Q' */
#define DRAIN_READS 16               /* output read after the shell's exit, at most */
#define MAX_DIRECT 8                 /* direct clients at once */
#define DIRECT_CODE_WAIT_MS 1000     /* a direct client's 'E' waits this long for 'X' */
#define FDS_MAX 253                  /* the kernel's SCM_MAX_FD: fds one message can carry */
#define COMPLAIN_EVERY_MS (60 * 1000) /* complain(): at most one line this often */

#define CONTROL 0
#define NCLIENTS (1 + MAX_DIRECT)

struct client {
    int fd;       /* -1: no client in this slot */
    uint64_t off; /* the next byte to send it */
    int hello_pending, e_sent, send_blocked, read_only;
};

static unsigned char *ring;
static size_t cap;
static uint64_t total; /* bytes ever appended; byte o lives at ring[o % cap] */
static int lfd = -1, master = -1, pidfd = -1;
static struct client cl[NCLIENTS]; /* cl[CONTROL] is runtimed, the others direct clients */
static int exited, master_eof, code_known;
static int32_t code;
static unsigned char *inbuf;
static size_t inlen, incap;
static int64_t next_read_ms, exit_deadline_ms, exited_ms;
static const char *name = "kl-pty-holder";

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A line about something a client can make happen once per datagram (input dropped, an
 * attach refused). Our stderr is runtimed's <session>.log, a plain file on the host's disk
 * that nobody rotates, and a browser sends thousands of keystroke frames a second: so at
 * most one such line every COMPLAIN_EVERY_MS, the next one saying how many were left out. */
__attribute__((format(printf, 1, 2))) static void complain(const char *fmt, ...) {
    static int64_t last_ms;
    static int said;
    static uint64_t left_out;
    int64_t now = now_ms();
    if (said && now - last_ms < COMPLAIN_EVERY_MS) {
        left_out++;
        return;
    }
    said = 1;
    last_ms = now;
    if (left_out) fprintf(stderr, "%s: (%" PRIu64 " such lines left out)\n", name, left_out);
    left_out = 0;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static uint64_t ring_start(void) { return total > cap ? total - cap : 0; }

static void append(const unsigned char *d, size_t n) {
    uint64_t off = total;
    total += n;
    if (n > cap) {
        off += n - cap;
        d += n - cap;
        n = cap;
    }
    size_t pos = (size_t)(off % cap);
    size_t first = cap - pos < n ? cap - pos : n;
    memcpy(ring + pos, d, first);
    memcpy(ring, d + first, n - first);
}

static int any_client(void) {
    for (int i = 0; i < NCLIENTS; i++)
        if (cl[i].fd >= 0) return 1;
    return 0;
}

static int any_direct(void) {
    for (int i = CONTROL + 1; i < NCLIENTS; i++)
        if (cl[i].fd >= 0) return 1;
    return 0;
}

/* How much may be read from the master now without overwriting output a connected
 * client has not been sent yet. While a direct client is connected the control client
 * does not count: runtimed reads at its own pace (paused when it has nobody attached),
 * and a terminal handed off must not wait for it; it skips what it fell behind. */
static size_t read_room(void) {
    size_t room = READ_CHUNK;
    int direct = any_direct();
    for (int i = 0; i < NCLIENTS; i++) {
        if (cl[i].fd < 0 || (i == CONTROL && direct)) continue;
        uint64_t unsent = total - cl[i].off;
        size_t r = unsent >= cap ? 0 : cap - (size_t)unsent;
        if (r < room) room = r;
    }
    return room;
}

static void drop_client(struct client *c) {
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->send_blocked = 0;
}

/* A client starts at the oldest byte in the ring, with the hello. */
static void add_client(struct client *c, int fd, int read_only) {
    c->fd = fd;
    c->off = ring_start();
    c->hello_pending = 1;
    c->e_sent = 0;
    c->send_blocked = 0;
    c->read_only = read_only;
}

/* Send one datagram; 1 sent, 0 would block, -1 the client is gone. */
static int send_msg(int fd, unsigned char type, const void *body, size_t len) {
    struct iovec iov[2] = {{&type, 1}, {(void *)body, len}};
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
    if (sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) return 1;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) return 0;
    return -1;
}

/* When a direct client waits only for the exit code, until when ('E' timing above). */
static int64_t direct_e_deadline(void) { return exited_ms + DIRECT_CODE_WAIT_MS; }

static int e_due(const struct client *c, int64_t now) {
    if (!exited || c->e_sent || c->off < total) return 0;
    if (c == &cl[CONTROL] || code_known || cl[CONTROL].fd < 0) return 1;
    return now >= direct_e_deadline();
}

static int control_message(void);

static void flush_client(struct client *c, int64_t now) {
    int r = 1;
    if (c->fd < 0) return;
    if (c->hello_pending) {
        unsigned char h[32] = {0};
        uint32_t v = PROTO_VERSION, pid = (uint32_t)getpid();
        struct winsize ws = {0};
        if (master >= 0) ioctl(master, TIOCGWINSZ, &ws);
        uint16_t rows = ws.ws_row, cols = ws.ws_col;
        memcpy(h, &v, 4);
        memcpy(h + 4, &rows, 2);
        memcpy(h + 6, &cols, 2);
        h[8] = (unsigned char)exited;
        h[9] = (unsigned char)code_known;
        memcpy(h + 12, &code, 4);
        memcpy(h + 16, &total, 8);
        memcpy(h + 24, &pid, 4);
        r = send_msg(c->fd, 'H', h, sizeof h);
        if (r == 1) c->hello_pending = 0;
    }
    if (c->off < ring_start()) c->off = ring_start(); /* overwritten while it did not count */
    while (r == 1 && c->off < total) {
        size_t pos = (size_t)(c->off % cap);
        uint64_t left = total - c->off;
        size_t len = cap - pos;
        if (len > left) len = (size_t)left;
        if (len > MSG_MAX) len = MSG_MAX;
        r = send_msg(c->fd, 'O', ring + pos, len);
        if (r == 1) c->off += len;
    }
    if (r == 1 && e_due(c, now)) {
        unsigned char e[5];
        e[0] = (unsigned char)code_known;
        memcpy(e + 1, &code, 4);
        r = send_msg(c->fd, 'E', e, sizeof e);
        if (r == 1) c->e_sent = 1;
    }
    if (r < 0 && c == &cl[CONTROL]) {
        /* runtimed is gone, but what it sent before it went ('A', 'X') is still queued */
        while (c->fd >= 0 && control_message() > 0) {
        }
    }
    if (r < 0) drop_client(c);
    else c->send_blocked = r == 0;
}

static void input(const unsigned char *d, size_t n) {
    if (master < 0 || n == 0) return;
    if (inlen) {
        const unsigned char *c = memrchr(d, 3, n);
        if (c) { /* Ctrl-C overtakes unread input (the line discipline flushes it anyway) */
            inlen = 0;
            n -= (size_t)(c - d);
            d = c;
        } else if (inlen + n > MAX_INPUT) {
            complain("input backlog full, input dropped");
            return;
        } else {
            memcpy(inbuf + inlen, d, n); /* incap >= MAX_INPUT */
            inlen += n;
            return;
        }
    }
    ssize_t w = write(master, d, n);
    if (w < 0) {
        if (errno != EAGAIN) return; /* EIO: nobody has the terminal open */
        w = 0;
    }
    if ((size_t)w < n) {
        if (!inbuf) {
            incap = MAX_INPUT;
            inbuf = malloc(incap);
            if (!inbuf) return;
        }
        size_t rest = n - (size_t)w;
        if (rest > incap) rest = incap;
        memcpy(inbuf, d + w, rest);
        inlen = rest;
    }
}

static void write_pending(void) {
    ssize_t w = write(master, inbuf, inlen);
    if (w < 0) {
        if (errno == EAGAIN) return;
        inlen = 0;
        return;
    }
    memmove(inbuf, inbuf + w, inlen - (size_t)w);
    inlen -= (size_t)w;
}

/* 'R' u16 rows, u16 cols */
static void resize(const unsigned char *m, size_t n) {
    if (n < 5 || master < 0) return;
    struct winsize ws = {0};
    uint16_t rows, cols;
    memcpy(&rows, m + 1, 2);
    memcpy(&cols, m + 3, 2);
    ws.ws_row = rows;
    ws.ws_col = cols;
    ioctl(master, TIOCSWINSZ, &ws);
}

static void close_master(void) {
    if (master >= 0) close(master); /* SIGHUP to whatever still runs on the terminal */
    master = -1;
    master_eof = 1;
    inlen = 0;
}

static unsigned char rbuf[READ_CHUNK];

/* 1: read something, 0: nothing now, -1: end of output */
static int read_master(size_t room) {
    ssize_t n = read(master, rbuf, room);
    if (n > 0) {
        append(rbuf, (size_t)n);
        return 1;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
    master_eof = 1; /* EIO: every slave fd is closed */
    return -1;
}

static void shell_exited(void) {
    for (int i = 0; i < DRAIN_READS && master >= 0 && !master_eof; i++) {
        size_t room = read_room();
        if (room == 0 || read_master(room) <= 0) break;
    }
    close_master();
    if (pidfd >= 0) close(pidfd);
    pidfd = -1;
    exited = 1;
    exited_ms = now_ms();
    exit_deadline_ms = exited_ms + EXIT_GRACE_MS;
}

/* A connected AF_UNIX SOCK_SEQPACKET socket (not a listening one): what 'A' must carry. */
static int direct_socket_ok(int fd) {
    int v;
    socklen_t len = sizeof v;
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &len) < 0 || v != AF_UNIX) return 0;
    len = sizeof v;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &len) < 0 || v != SOCK_SEQPACKET) return 0;
    len = sizeof v;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) < 0 || v) return 0;
    struct sockaddr_un peer;
    len = sizeof peer;
    return getpeername(fd, (struct sockaddr *)&peer, &len) == 0;
}

/* 'A': serve fd (close-on-exec already) as a direct client, or close it. */
static void add_direct(int fd, int read_only) {
    if (!direct_socket_ok(fd)) {
        complain("direct client refused: not a connected unix seqpacket socket");
        close(fd);
        return;
    }
    for (int i = 1; i < NCLIENTS; i++) {
        if (cl[i].fd < 0) {
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
            add_client(&cl[i], fd, read_only);
            return;
        }
    }
    complain("direct client refused: %d already", MAX_DIRECT);
    close(fd);
}

static unsigned char mbuf[MSG_MAX + 64];

/* One message from the control client: 1 handled, 0 none waiting, -1 the client is gone. */
static int control_message(void) {
    struct client *c = &cl[CONTROL];
    union {
        struct cmsghdr align;
        unsigned char b[CMSG_SPACE(FDS_MAX * sizeof(int))];
    } cbuf;
    struct iovec iov = {mbuf, sizeof mbuf};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.b, .msg_controllen = sizeof cbuf.b};
    ssize_t n = recvmsg(c->fd, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return 0;
        /* the client closed with our output unread: the kernel reports that first, once, but
         * what it sent before closing is still queued ('X', 'A'): take it, then the EOF */
        if (errno == ECONNRESET) return 1;
        drop_client(c);
        return -1;
    }
    /* every fd that arrived: they are in our table now, whatever the message */
    int fds[FDS_MAX], nfds = 0;
    for (struct cmsghdr *h = CMSG_FIRSTHDR(&m); h; h = CMSG_NXTHDR(&m, h)) {
        if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS) continue;
        size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t j = 0; j < k && nfds < FDS_MAX; j++) memcpy(&fds[nfds++], CMSG_DATA(h) + j * sizeof(int), sizeof(int));
    }
    int keep = -1;
    if (n == 2 && mbuf[0] == 'A' && mbuf[1] <= 1 && nfds == 1 && !(m.msg_flags & (MSG_CTRUNC | MSG_TRUNC))) keep = fds[0];
    for (int i = 0; i < nfds; i++)
        if (fds[i] != keep) close(fds[i]);
    if (n == 0) {
        drop_client(c);
        return -1;
    }
    switch (mbuf[0]) {
    case 'I':
        input(mbuf + 1, (size_t)n - 1);
        break;
    case 'R':
        resize(mbuf, (size_t)n);
        break;
    case 'X':
        if (n >= 5) {
            memcpy(&code, mbuf + 1, 4);
            code_known = 1;
        }
        break;
    case 'Q':
        exit(0);
    case 'A':
        if (keep >= 0) add_direct(keep, mbuf[1]);
        else complain("malformed 'A' refused (%zd bytes, %d fds)", n, nfds);
        break;
    default:
        break;
    }
    return 1;
}

/* One message from a direct client: 1 handled, 0 none waiting, -1 the client is gone
 * (it went away, or sent what a direct client may not). Plain recv: no fds, ever. */
static int direct_message(struct client *c) {
    ssize_t n = recv(c->fd, mbuf, sizeof mbuf, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
    if (n <= 0) {
        drop_client(c);
        return -1;
    }
    switch (mbuf[0]) {
    case 'I':
        if (!c->read_only) input(mbuf + 1, (size_t)n - 1);
        return 1;
    case 'R':
        if (!c->read_only) resize(mbuf, (size_t)n);
        return 1;
    default:
        drop_client(c);
        return -1;
    }
}

static void accept_client(void) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    struct ucred cr;
    socklen_t len = sizeof cr;
    /* a runtimed that died may have left messages before its hang-up: take them all, so
     * its successor is not refused because the hang-up was not seen yet */
    while (cl[CONTROL].fd >= 0 && control_message() > 0) {
    }
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 || cr.uid != 0 || cl[CONTROL].fd >= 0) {
        /* only root (runtimed), and one at a time: a dead runtimed's connection is closed by
         * the kernel, so the next one gets in; nobody can take over a live one */
        close(fd);
        return;
    }
    add_client(&cl[CONTROL], fd, 0);
}

static int parse_fd(const char *s) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 0 || v > 65535) return -1;
    return (int)v;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: kl-pty-holder LISTEN_FD MASTER_FD PIDFD SCROLLBACK [SANDBOX SESSION]\n");
        return 2;
    }
    lfd = parse_fd(argv[1]);
    master = parse_fd(argv[2]);
    pidfd = parse_fd(argv[3]);
    long sb = strtol(argv[4], NULL, 10);
    if (lfd < 0 || master < 0 || pidfd < 0 || sb <= 0 || sb > (1L << 30)) {
        fprintf(stderr, "kl-pty-holder: bad arguments\n");
        return 2;
    }
    cap = (size_t)sb;
    ring = malloc(cap);
    if (!ring) {
        fprintf(stderr, "kl-pty-holder: cannot allocate %zu bytes of scrollback\n", cap);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    int fds[3] = {lfd, master, pidfd};
    for (int i = 0; i < 3; i++) {
        fcntl(fds[i], F_SETFL, fcntl(fds[i], F_GETFL) | O_NONBLOCK);
        fcntl(fds[i], F_SETFD, FD_CLOEXEC);
    }
    for (int i = 0; i < NCLIENTS; i++) cl[i].fd = -1;

    for (;;) {
        struct pollfd p[3 + NCLIENTS];
        int pc[NCLIENTS]; /* cl[i]'s entry in p, or -1 */
        int n = 0, il = -1, im = -1, ip = -1;
        int64_t now = now_ms(), timeout = -1;
        p[il = n++] = (struct pollfd){lfd, POLLIN, 0};
        for (int i = 0; i < NCLIENTS; i++) {
            pc[i] = -1;
            if (cl[i].fd >= 0) {
                pc[i] = n;
                p[n++] = (struct pollfd){cl[i].fd, (short)(POLLIN | (cl[i].send_blocked ? POLLOUT : 0)), 0};
            }
        }
        if (master >= 0) {
            short ev = 0;
            size_t room = read_room();
            if (!master_eof && room > 0) {
                if (any_client() || now >= next_read_ms) ev |= POLLIN;
                else timeout = next_read_ms - now;
            }
            if (inlen) ev |= POLLOUT;
            /* not polled at all otherwise: a hung-up master would report POLLHUP in a loop */
            if (ev) p[im = n++] = (struct pollfd){master, ev, 0};
        }
        if (pidfd >= 0) p[ip = n++] = (struct pollfd){pidfd, POLLIN, 0};
        if (exited) {
            int64_t left = exit_deadline_ms - now;
            if (left <= 0) return 0; /* nobody collected the exit in time */
            if (timeout < 0 || left < timeout) timeout = left;
            /* a direct client that has every byte waits for the code until a deadline */
            int64_t wait = direct_e_deadline() - now;
            for (int i = 1; i < NCLIENTS && wait > 0; i++) {
                const struct client *c = &cl[i];
                if (c->fd >= 0 && !c->e_sent && !c->send_blocked && !c->hello_pending && c->off == total && !e_due(c, now)) {
                    if (timeout < 0 || wait < timeout) timeout = wait;
                    break;
                }
            }
        }
        if (poll(p, (nfds_t)n, (int)timeout) < 0) {
            if (errno == EINTR) continue;
            fprintf(stderr, "%s: poll: %s\n", name, strerror(errno));
            return 1;
        }
        if (im >= 0 && p[im].revents) {
            if ((p[im].revents & POLLOUT) && inlen) write_pending();
            if (p[im].revents & (POLLIN | POLLHUP | POLLERR)) {
                if (p[im].events & POLLIN) {
                    size_t room = read_room();
                    if (room > 0 && read_master(room) > 0 && !any_client()) next_read_ms = now_ms() + DETACHED_INTERVAL_MS;
                } else if (p[im].revents & (POLLHUP | POLLERR)) {
                    inlen = 0; /* only polled for input, which can no longer be written */
                }
            }
        }
        if (ip >= 0 && p[ip].revents) shell_exited();
        /* direct clients before the control client: an 'A' may fill a slot freed just now,
         * and the new client must not be handed the old one's events */
        for (int i = NCLIENTS - 1; i >= 0; i--) {
            struct client *c = &cl[i];
            if (pc[i] < 0 || c->fd != p[pc[i]].fd || !p[pc[i]].revents) continue;
            short re = p[pc[i]].revents;
            if (re & POLLOUT) c->send_blocked = 0;
            if (re & (POLLIN | POLLHUP | POLLERR)) {
                if (i == CONTROL) control_message();
                else direct_message(c);
            }
        }
        if (p[il].revents & POLLIN) accept_client();
        now = now_ms();
        for (int i = 0; i < NCLIENTS; i++) flush_client(&cl[i], now);
    }
}
