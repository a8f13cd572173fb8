#ifndef CHIREDIS_SHIM_H
#define CHIREDIS_SHIM_H
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>
#include <time.h>
#include <hiredis/hiredis.h>

/* hiredis writes to its socket with write(2): a write to a Redis connection whose peer is gone
 * raises SIGPIPE, whose default action kills the process, and a library must not change the
 * process's signal dispositions. So each exchange runs with SIGPIPE blocked on the calling
 * thread (the write then fails with EPIPE, which hiredis reports), and a SIGPIPE raised
 * meanwhile is consumed before the thread's mask is restored. */
static inline void msse_redis_block_sigpipe(sigset_t *saved) {
    sigset_t pipe_only;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, saved);
}

static inline void msse_redis_restore_sigpipe(const sigset_t *saved) {
    if (sigismember(saved, SIGPIPE)) return; /* it was blocked before: leave it as it was */
    sigset_t pipe_only, pending;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE)) {
        struct timespec now = {0, 0};
        sigtimedwait(&pipe_only, NULL, &now);
    }
    pthread_sigmask(SIG_SETMASK, saved, NULL);
}
#endif
