/*
 * kl-exec-agent: the resident exec agent of one sandbox (design: runtime/sandbox/fastexec.py).
 *
 * Started once per sandbox by `runc exec -d` (so it already has the sandbox's
 * namespaces, capability sets, no_new_privs, seccomp filter, user, groups and
 * cgroups, exactly as runc gives them to any exec'd process), with
 *   fd 0 = this binary (host file, exec-only: runc execs /proc/self/fd/0),
 *   fd 1 = our end of a SOCK_SEQPACKET socketpair whose other end only runtimed holds.
 * Nothing of it is reachable from inside the sandbox: no path, no socket file.
 *
 * Per request (one datagram: header, cwd, argv, env; SCM_RIGHTS: the exec
 * cgroup's cgroup.procs opened by runtimed, then stdin/stdout/stderr unless tty)
 * it clone()s with CLONE_PARENT, so the new process is runtimed's child (as a
 * `runc exec -d` process is, runtimed being a child subreaper) and runtimed
 * waitpid()s it for its real exit status. The child joins the exec cgroup,
 * setsid()s, takes its stdio or a PTY slave as controlling terminal, chdir()s,
 * resets signals and execve()s. A close-on-exec pipe tells us whether execve
 * succeeded. The reply carries the child's pid as SCM_CREDENTIALS (the kernel
 * translates it into runtimed's pid namespace) and, for tty, the PTY master.
 * EOF on the socket (runtimed closed it or died) ends the agent.
 *
 * Build: runtime/sandbox/agent/build.sh (gcc -static).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

#define MAGIC 0x6b6c7831u /* "klx1" */
#define MAX_REQ (256 * 1024)
#define MAX_STRS 65536
#define MAX_FDS 4
#define FLAG_TTY 1u

struct req_hdr {
    uint32_t magic;
    uint32_t flags;
    uint16_t rows, cols;
    uint32_t argc, envc;
};

struct reply {
    int32_t err;   /* 0: started; else an errno */
    int32_t vpid;  /* the child's pid inside the sandbox, 0 if none was created */
    char msg[256]; /* what failed, for a person */
};

struct child_err {
    int32_t err;
    char msg[248];
};

static char buf[MAX_REQ + 1];
static char *strs[2 * MAX_STRS + 4];

static void send_reply(int ctl, const struct reply *r, pid_t child, int master) {
    struct iovec iov = {.iov_base = (void *)r, .iov_len = sizeof(*r)};
    union {
        char buf[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } cbuf;
    memset(&cbuf, 0, sizeof(cbuf));
    char *at = cbuf.buf;
    if (child > 0) { /* the kernel translates the pid into runtimed's pid namespace */
        struct ucred uc = {.pid = child, .uid = getuid(), .gid = getgid()};
        struct cmsghdr *c = (struct cmsghdr *)at;
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_CREDENTIALS;
        c->cmsg_len = CMSG_LEN(sizeof(uc));
        memcpy(CMSG_DATA(c), &uc, sizeof(uc));
        at += CMSG_SPACE(sizeof(uc));
    }
    if (master >= 0) {
        struct cmsghdr *c = (struct cmsghdr *)at;
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &master, sizeof(int));
        at += CMSG_SPACE(sizeof(int));
    }
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (at != cbuf.buf) {
        mh.msg_control = cbuf.buf;
        mh.msg_controllen = (size_t)(at - cbuf.buf);
    }
    while (sendmsg(ctl, &mh, MSG_NOSIGNAL) < 0) {
        if (errno != EINTR) _exit(1); /* runtimed is gone */
    }
}

static void fail(int ctl, int err, const char *what) {
    struct reply r = {.err = err ? err : EINVAL, .vpid = 0};
    snprintf(r.msg, sizeof(r.msg), "%s", what);
    send_reply(ctl, &r, 0, -1);
}

/* The child: between clone and execve, async-signal-safe work only (we are single-threaded). */
static void child_err(int pipefd, int err, const char *what, const char *arg) {
    struct child_err ce = {.err = err};
    if (arg)
        snprintf(ce.msg, sizeof(ce.msg), "%s \"%s\": %s", what, arg, strerror(err));
    else
        snprintf(ce.msg, sizeof(ce.msg), "%s: %s", what, strerror(err));
    ssize_t unused = write(pipefd, &ce, sizeof(ce));
    (void)unused;
    _exit(127);
}

static const char *find_path(const char *name, char **envp, char *out, size_t outlen) {
    if (strchr(name, '/')) return name;
    const char *path = NULL;
    for (char **e = envp; *e; e++)
        if (strncmp(*e, "PATH=", 5) == 0) path = *e + 5;
    if (path == NULL) return NULL;
    const char *p = path;
    for (;;) {
        const char *end = strchr(p, ':');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        int w = n ? snprintf(out, outlen, "%.*s/%s", (int)n, p, name) : snprintf(out, outlen, "./%s", name);
        struct stat st;
        if (w > 0 && (size_t)w < outlen && stat(out, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111))
            return out;
        if (!end) return NULL;
        p = end + 1;
    }
}

static void run_child(int errw, int cgfd, int tty, int slave, const int *stdio, const char *cwd, char **argv,
                      char **envp) {
    sigset_t none;
    sigemptyset(&none);
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++) sigaction(s, &dfl, NULL); /* EINVAL for KILL/STOP/RT-internal: fine */
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (write(cgfd, "0", 1) != 1) child_err(errw, errno, "joining the exec cgroup", NULL);
    if (setsid() < 0) child_err(errw, errno, "setsid", NULL);
    if (tty) {
        if (ioctl(slave, TIOCSCTTY, 0) < 0) child_err(errw, errno, "TIOCSCTTY", NULL);
        for (int i = 0; i < 3; i++)
            if (dup2(slave, i) < 0) child_err(errw, errno, "dup2", NULL);
    } else {
        for (int i = 0; i < 3; i++)
            if (dup2(stdio[i], i) < 0) child_err(errw, errno, "dup2", NULL);
    }
    if (chdir(cwd) < 0) child_err(errw, errno, "chdir to cwd", cwd);
    static char pathbuf[4096];
    const char *path = find_path(argv[0], envp, pathbuf, sizeof(pathbuf));
    if (path == NULL) { /* runc's words */
        struct child_err ce = {.err = ENOENT};
        snprintf(ce.msg, sizeof(ce.msg), "exec: \"%s\": executable file not found in $PATH", argv[0]);
        ssize_t unused = write(errw, &ce, sizeof(ce));
        (void)unused;
        _exit(127);
    }
    execve(path, argv, envp);
    child_err(errw, errno, "exec:", path);
}

static void handle(int ctl, ssize_t n, int *fds, int nfds) {
    struct req_hdr h;
    if ((size_t)n < sizeof(h)) return fail(ctl, EINVAL, "short request");
    memcpy(&h, buf, sizeof(h));
    int tty = (h.flags & FLAG_TTY) != 0;
    if (h.magic != MAGIC || h.argc == 0 || h.argc > MAX_STRS || h.envc > MAX_STRS)
        return fail(ctl, EINVAL, "bad request header");
    if (nfds != (tty ? 1 : 4)) return fail(ctl, EINVAL, "wrong number of fds");
    /* strings: cwd, argv..., env..., each NUL-terminated; argv and envp get their NULLs */
    buf[n] = '\0';
    char *p = buf + sizeof(h), *end = buf + n;
    uint32_t want = 1 + h.argc + h.envc;
    for (uint32_t i = 0, slot = 0; i < want; i++, slot++) {
        if (p >= end) return fail(ctl, EINVAL, "truncated strings");
        if (i == 1 + h.argc) strs[slot++] = NULL;
        strs[slot] = p;
        p += strlen(p) + 1;
    }
    if (h.envc == 0) strs[1 + h.argc] = NULL;
    strs[2 + h.argc + h.envc] = NULL;
    char *cwd = strs[0];
    char **argv = &strs[1];
    char **envp = &strs[2 + h.argc];

    int master = -1, slave = -1;
    if (tty) {
        master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (master < 0) return fail(ctl, errno, "open /dev/ptmx");
        int unlock = 0;
        if (ioctl(master, TIOCSPTLCK, &unlock) < 0) {
            int e = errno;
            close(master);
            return fail(ctl, e, "unlockpt");
        }
        slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (slave < 0) {
            int e = errno;
            close(master);
            return fail(ctl, e, "open the PTY slave");
        }
        struct winsize ws = {.ws_row = h.rows, .ws_col = h.cols};
        ioctl(slave, TIOCSWINSZ, &ws);
    }
    int ep[2];
    if (pipe2(ep, O_CLOEXEC) < 0) {
        int e = errno;
        if (tty) close(master), close(slave);
        return fail(ctl, e, "pipe2");
    }
    pid_t pid = (pid_t)syscall(SYS_clone, CLONE_PARENT | SIGCHLD, NULL, NULL, NULL, NULL);
    if (pid == 0) run_child(ep[1], fds[0], tty, slave, fds + 1, cwd, argv, envp);
    int clone_errno = errno;
    close(ep[1]);
    if (slave >= 0) close(slave);
    struct reply r = {.err = 0, .vpid = pid > 0 ? pid : 0};
    if (pid < 0) {
        r.err = clone_errno;
        snprintf(r.msg, sizeof(r.msg), "clone: %s", strerror(clone_errno));
    } else {
        struct child_err ce;
        size_t got = 0;
        while (got < sizeof(ce)) {
            ssize_t k = read(ep[0], (char *)&ce + got, sizeof(ce) - got);
            if (k < 0 && errno == EINTR) continue;
            if (k <= 0) break;
            got += (size_t)k;
        }
        if (got == sizeof(ce)) {
            r.err = ce.err ? ce.err : EINVAL;
            ce.msg[sizeof(ce.msg) - 1] = '\0';
            snprintf(r.msg, sizeof(r.msg), "%s", ce.msg);
        }
    }
    close(ep[0]);
    send_reply(ctl, &r, pid > 0 ? pid : 0, r.err == 0 ? master : -1);
    if (master >= 0) close(master);
}

int main(int argc, char **argv) {
    /* exec'd from an unreadable host file, we are already non-dumpable; say it anyway */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    prctl(PR_SET_NAME, "kl-exec-agent", 0, 0, 0);
    if (argc > 0 && strlen(argv[0]) >= 15) {
        size_t n = strlen(argv[0]);
        memset(argv[0], ' ', n);
        memcpy(argv[0], "[kl-exec-agent]", 15);
    }
    signal(SIGPIPE, SIG_IGN);
    int ctl = fcntl(1, F_DUPFD_CLOEXEC, 3);
    if (ctl < 0) return 1;
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (devnull < 0) return 1;
    dup2(devnull, 0); /* the binary's fd */
    dup2(devnull, 1); /* the socket's original fd */
    dup2(devnull, 2);
    close(devnull);
    /* nothing else may leak in: close every other fd (runc passes none, but be sure) */
    if ((ctl > 3 && syscall(SYS_close_range, 3, ctl - 1, 0) < 0) || syscall(SYS_close_range, ctl + 1, ~0u, 0) < 0) {
        for (int fd = 3; fd < 4096; fd++)
            if (fd != ctl) close(fd);
    }
    for (;;) {
        int fds[MAX_FDS];
        char cbuf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
        struct iovec iov = {.iov_base = buf, .iov_len = MAX_REQ};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
        ssize_t n = recvmsg(ctl, &mh, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return 0; /* runtimed closed its end or went away */
        int nfds = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
            int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            for (int i = 0; i < k; i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                if (nfds < MAX_FDS)
                    fds[nfds++] = fd;
                else
                    close(fd);
            }
        }
        if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))
            fail(ctl, EMSGSIZE, "request too large");
        else
            handle(ctl, n, fds, nfds);
        for (int i = 0; i < nfds; i++) close(fds[i]);
    }
}
