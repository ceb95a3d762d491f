/* LD_PRELOAD shim for smolvm 0.8.0's dynamic agent, run by krun-standin.
 *
 * The agent listens only on AF_VSOCK port 6000 with raw libc calls
 * (crates/smolvm-agent/src/vsock.rs at v0.8.0: socket, bind, listen,
 * accept). There is no vsock here: krun-standin hands the agent an
 * inherited unix listener already bound at the host's <vmdir>/agent.sock,
 * its fd number in KRUN_STANDIN_VSOCK_FD. This shim makes the first
 * socket(AF_VSOCK, ...) return that fd, and bind/listen on it succeed.
 * Its constructor removes LD_PRELOAD and KRUN_STANDIN_VSOCK_FD from the
 * environment before main, so crun and crane (musl programs, which could
 * not load this glibc object) do not inherit them.
 * Built with: gcc -shared -fPIC -O2 -o libkrun-vsock-shim.so vsock-shim.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

static int handed_fd = -1;   /* the inherited listener, until handed out */
static int given_fd = -1;    /* the fd returned for socket(AF_VSOCK) */

__attribute__((constructor)) static void krun_shim_init(void) {
    const char *s = getenv("KRUN_STANDIN_VSOCK_FD");
    if (s != NULL && *s != '\0') {
        handed_fd = atoi(s);
        /* Not inherited by the agent's children (crun, crane, vm_exec). */
        fcntl(handed_fd, F_SETFD, FD_CLOEXEC);
    }
    unsetenv("KRUN_STANDIN_VSOCK_FD");
    unsetenv("LD_PRELOAD");
}

int socket(int domain, int type, int protocol) {
    static int (*real)(int, int, int);
    if (domain == AF_VSOCK && handed_fd >= 0) {
        given_fd = handed_fd;
        handed_fd = -1;
        return given_fd;
    }
    if (real == NULL)
        real = (int (*)(int, int, int))dlsym(RTLD_NEXT, "socket");
    return real(domain, type, protocol);
}

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static int (*real)(int, const struct sockaddr *, socklen_t);
    if (fd == given_fd && fd >= 0)
        return 0;
    if (real == NULL)
        real = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
    return real(fd, addr, len);
}

int listen(int fd, int backlog) {
    static int (*real)(int, int);
    if (fd == given_fd && fd >= 0)
        return 0; /* already listening (bound by the host side) */
    if (real == NULL)
        real = (int (*)(int, int))dlsym(RTLD_NEXT, "listen");
    return real(fd, backlog);
}
