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
 * It runs nothing: it copies bytes between the master and one client (runtimed),
 * keeps the last SCROLLBACK bytes of output in a ring, and serves them again to the
 * next client (the replay). One client at a time: a connection made while another
 * is open is closed at once (runtimed's is closed by the kernel when runtimed dies).
 *
 * Messages (one datagram each, first byte the type):
 *   client -> holder  'I' input bytes | 'R' u16 rows, u16 cols | 'X' i32 exit code
 *                     (runtimed reaped the shell) | 'Q' quit now (the session is removed
 *                     or its end was collected: close the master, exit)
 *   holder -> client  'H' hello (u32 version, u16 rows, u16 cols, u8 exited,
 *                     u8 code known, u16 0, i32 code, u64 bytes ever output, u32 our
 *                     pid, u32 0) first, then
 *                     'O' output (the ring's replay, then live) and, once the shell has
 *                     exited and every byte has been sent, 'E' (u8 code known, i32 code).
 *
 * Flow control: the client's read position is an offset into the ring. While a
 * client is connected we read the master only into ring space the client has
 * already been sent, so a client that stops reading (runtimed pauses its reader
 * when a browser is slow) fills the socket, then the ring, and then we stop
 * reading the master: the kernel's PTY buffer fills and the program blocks in
 * write(). With no client (runtimed is down) we keep reading, overwriting the
 * oldest scrollback, at most 20 reads a second. Input is written at once, never
 * behind output; a Ctrl-C overtakes input the program has not read yet.
 *
 * Ends: on 'Q'; or when the shell has exited and no 'Q' came within EXIT_GRACE;
 * or on SIGTERM/SIGKILL. Closing the master hangs up whatever still runs on it.
 *
 * Build: runtime/sandbox/agent/build.sh (gcc -static).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#define PROTO_VERSION 1
#define MSG_MAX (32 * 1024)          /* output bytes per 'O' datagram */
#define READ_CHUNK (64 * 1024)       /* bytes per read of the master */
#define DETACHED_INTERVAL_MS 50      /* with no client: at most 20 reads a second */
#define MAX_INPUT (1024 * 1024)      /* input the program has not read yet */
#define EXIT_GRACE_MS (600 * 1000)   /* after the shell's exit, wait this long for 'Q' */
#define DRAIN_READS 16               /* output read after the shell's exit, at most */

static unsigned char *ring;
static size_t cap;
static uint64_t total; /* bytes ever appended; byte o lives at ring[o % cap] */
static int lfd = -1, master = -1, pidfd = -1, client = -1;
static uint64_t coff; /* the client's next byte */
static int hello_pending, e_sent, send_blocked;
static int exited, master_eof, code_known;
static int32_t code;
static unsigned char *inbuf;
static size_t inlen, incap;
static int64_t next_read_ms, exit_deadline_ms;
static const char *name = "kl-pty-holder";

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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

/* How much may be read from the master now without overwriting unsent output. */
static size_t read_room(void) {
    size_t room = READ_CHUNK;
    if (client >= 0) {
        uint64_t unsent = total - coff;
        room = unsent >= cap ? 0 : cap - (size_t)unsent;
        if (room > READ_CHUNK) room = READ_CHUNK;
    }
    return room;
}

static void drop_client(void) {
    if (client >= 0) close(client);
    client = -1;
    send_blocked = 0;
}

/* Send one datagram; 1 sent, 0 would block, -1 the client is gone. */
static int send_msg(unsigned char type, const void *body, size_t len) {
    struct iovec iov[2] = {{&type, 1}, {(void *)body, len}};
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
    if (sendmsg(client, &m, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) return 1;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) return 0;
    return -1;
}

static void flush_client(void) {
    int r = 1;
    if (client < 0) return;
    if (hello_pending) {
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
        r = send_msg('H', h, sizeof h);
        if (r == 1) hello_pending = 0;
    }
    while (r == 1 && coff < total) {
        size_t pos = (size_t)(coff % cap);
        uint64_t left = total - coff;
        size_t len = cap - pos;
        if (len > left) len = (size_t)left;
        if (len > MSG_MAX) len = MSG_MAX;
        r = send_msg('O', ring + pos, len);
        if (r == 1) coff += len;
    }
    if (r == 1 && exited && !e_sent) {
        unsigned char e[5];
        e[0] = (unsigned char)code_known;
        memcpy(e + 1, &code, 4);
        r = send_msg('E', e, sizeof e);
        if (r == 1) e_sent = 1;
    }
    if (r < 0) drop_client();
    else send_blocked = r == 0;
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
            fprintf(stderr, "%s: input backlog full, input dropped\n", name);
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
    exit_deadline_ms = now_ms() + EXIT_GRACE_MS;
}

/* 1: handled a message, 0: none waiting, -1: the client is gone */
static int client_message(void) {
    static unsigned char buf[MSG_MAX + 64];
    ssize_t n = recv(client, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return 0;
        drop_client();
        return -1;
    }
    if (n == 0) {
        drop_client();
        return -1;
    }
    switch (buf[0]) {
    case 'I':
        input(buf + 1, (size_t)n - 1);
        break;
    case 'R':
        if (n >= 5 && master >= 0) {
            struct winsize ws = {0};
            uint16_t rows, cols;
            memcpy(&rows, buf + 1, 2);
            memcpy(&cols, buf + 3, 2);
            ws.ws_row = rows;
            ws.ws_col = cols;
            ioctl(master, TIOCSWINSZ, &ws);
        }
        break;
    case 'X':
        if (n >= 5) {
            memcpy(&code, buf + 1, 4);
            code_known = 1;
        }
        break;
    case 'Q':
        exit(0);
    default:
        break;
    }
    return 1;
}

static void accept_client(void) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    struct ucred cr;
    socklen_t len = sizeof cr;
    /* a runtimed that died may have left messages before its hang-up: take them all, so
     * its successor is not refused because the hang-up was not seen yet */
    while (client >= 0 && client_message() > 0) {
    }
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 || cr.uid != 0 || client >= 0) {
        /* only root (runtimed), and one at a time: a dead runtimed's connection is closed by
         * the kernel, so the next one gets in; nobody can take over a live one */
        close(fd);
        return;
    }
    client = fd;
    coff = ring_start();
    hello_pending = 1;
    e_sent = 0;
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

    for (;;) {
        struct pollfd p[4];
        int n = 0, il = -1, ic = -1, im = -1, ip = -1;
        int64_t now = now_ms(), timeout = -1;
        p[il = n++] = (struct pollfd){lfd, POLLIN, 0};
        if (client >= 0) p[ic = n++] = (struct pollfd){client, (short)(POLLIN | (send_blocked ? POLLOUT : 0)), 0};
        if (master >= 0) {
            short ev = 0;
            size_t room = read_room();
            if (!master_eof && room > 0) {
                if (client >= 0 || now >= next_read_ms) ev |= POLLIN;
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
                    if (room > 0 && read_master(room) > 0 && client < 0) next_read_ms = now_ms() + DETACHED_INTERVAL_MS;
                } else if (p[im].revents & (POLLHUP | POLLERR)) {
                    inlen = 0; /* only polled for input, which can no longer be written */
                }
            }
        }
        if (ip >= 0 && p[ip].revents) shell_exited();
        if (ic >= 0 && client >= 0 && p[ic].revents) {
            if (p[ic].revents & POLLOUT) send_blocked = 0;
            if (p[ic].revents & (POLLIN | POLLHUP | POLLERR)) client_message();
        }
        if (p[il].revents & POLLIN) accept_client();
        flush_client();
    }
}
