/*
 * kl-cgexec: join cgroups, then exec a program (see ../cgexec.py).
 *
 *   kl-cgexec FD[,FD...] PROGRAM [ARG...]
 *
 * Each FD is a descriptor of a cgroup's cgroup.procs that runtimed opened (as root, on
 * the host) and passed to this process. Writing "0" to it moves the writer itself into
 * that cgroup, so everything PROGRAM does -- and every process it forks -- is charged to
 * the sandbox the work is for, from its first instruction on. runtimed never sets up a
 * child with preexec_fn (a fork of a threaded interpreter); this static program is the
 * few syscalls between fork and exec instead.
 *
 * Exit status 125 when a cgroup cannot be joined (nothing of PROGRAM ran), 127 when
 * PROGRAM cannot be executed; otherwise PROGRAM's own (exec keeps the pid).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: kl-cgexec FD[,FD...] PROGRAM [ARG...]\n");
        return 125;
    }
    char *list = argv[1];
    while (*list) {
        char *end = NULL;
        errno = 0;
        long fd = strtol(list, &end, 10);
        if (errno || end == list || fd < 0 || fd > 65535 || (*end && *end != ',')) {
            fprintf(stderr, "kl-cgexec: bad descriptor list %s\n", argv[1]);
            return 125;
        }
        if (write((int)fd, "0", 1) != 1) {
            fprintf(stderr, "kl-cgexec: joining the sandbox's cgroup (fd %ld): %s\n", fd, strerror(errno));
            return 125;
        }
        close((int)fd);
        list = *end ? end + 1 : end;
    }
    execvp(argv[2], argv + 2);
    fprintf(stderr, "kl-cgexec: %s: %s\n", argv[2], strerror(errno));
    return 127;
}
