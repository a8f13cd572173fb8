/* epoll for the transport's peer watcher, and the eventfd of its suspended-stream writer: Swift's
 * Glibc module imports neither sys/epoll.h nor sys/eventfd.h. */
#include "mhd_shim.h"

#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

int msse_shim_eventfd(void) { return eventfd(0, EFD_CLOEXEC); }

int msse_shim_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

static int msse_shim_epoll_add(int epoll_fd, int fd, uint32_t events, uint64_t token) {
    struct epoll_event event = {.events = events, .data.u64 = token};
    return epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event);
}

int msse_shim_epoll_watch_readable(int epoll_fd, int fd, uint64_t token) {
    return msse_shim_epoll_add(epoll_fd, fd, EPOLLIN, token);
}

int msse_shim_epoll_watch_peer(int epoll_fd, int fd, uint64_t token) {
    return msse_shim_epoll_add(epoll_fd, fd, EPOLLRDHUP | EPOLLHUP | EPOLLERR | EPOLLET, token);
}

int msse_shim_epoll_unwatch(int epoll_fd, int fd) { return epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, NULL); }

int msse_shim_epoll_wait(int epoll_fd, msse_shim_epoll_event *out, int max, int timeout_ms) {
    struct epoll_event events[256];
    if (max > (int)(sizeof events / sizeof events[0])) max = (int)(sizeof events / sizeof events[0]);
    int n = epoll_wait(epoll_fd, events, max, timeout_ms);
    for (int i = 0; i < n; i++) {
        uint32_t mask = 0;
        if (events[i].events & (EPOLLHUP | EPOLLERR)) mask |= MSSE_SHIM_PEER_GONE;
        if (events[i].events & EPOLLRDHUP) mask |= MSSE_SHIM_PEER_CLOSED_SENDING;
        if (events[i].events & EPOLLIN) mask |= MSSE_SHIM_READABLE;
        out[i] = (msse_shim_epoll_event){.mask = mask, .token = events[i].data.u64};
    }
    return n;
}

int msse_shim_epoll_watch_writable(int epoll_fd, int fd, uint64_t token) {
    struct epoll_event event = {.events = EPOLLOUT | EPOLLONESHOT, .data.u64 = token};
    if (epoll_ctl(epoll_fd, EPOLL_CTL_MOD, fd, &event) == 0) return 0;
    return epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event);
}
