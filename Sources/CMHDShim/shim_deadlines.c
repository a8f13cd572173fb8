/* Request deadlines: a request must arrive in full within the connection timeout. */
#include "shim_internal.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

struct msse_shim_tracker {
    pthread_mutex_t lock;
    msse_shim_conn head; /* sentinel of a circular list, in deadline order */
    uint64_t timeout_ms;
};

static uint64_t msse_shim_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Both under the tracker's lock. */
static void msse_shim_unlink(msse_shim_conn *c) {
    if (c->next == NULL) return;
    c->prev->next = c->next;
    c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

static void msse_shim_link_tail(msse_shim_tracker *t, msse_shim_conn *c) {
    msse_shim_unlink(c);
    c->deadline_ms = msse_shim_now_ms() + t->timeout_ms;
    c->next = &t->head;
    c->prev = t->head.prev;
    t->head.prev->next = c;
    t->head.prev = c;
}

msse_shim_tracker *msse_shim_tracker_create(unsigned int request_timeout_seconds) {
    msse_shim_tracker *t = calloc(1, sizeof *t);
    if (t == NULL) return NULL;
    pthread_mutex_init(&t->lock, NULL);
    t->head.prev = t->head.next = &t->head;
    t->timeout_ms = (uint64_t)request_timeout_seconds * 1000u;
    return t;
}

void msse_shim_tracker_destroy(msse_shim_tracker *t) {
    if (t == NULL) return;
    /* After MHD_stop_daemon every connection has been notified closed, which freed its node;
     * free any linked straggler. The lock orders this after the last notification (the
     * caller's thread may be another). */
    pthread_mutex_lock(&t->lock);
    msse_shim_conn *c = t->head.next;
    while (c != &t->head) {
        msse_shim_conn *next = c->next;
        free(c);
        c = next;
    }
    t->head.next = t->head.prev = &t->head;
    pthread_mutex_unlock(&t->lock);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

void msse_shim_notify_connection(void *cls, struct MHD_Connection *connection, void **socket_context,
                                 enum MHD_ConnectionNotificationCode code) {
    msse_shim_tracker *t = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        msse_shim_conn *c = calloc(1, sizeof *c);
        if (c == NULL) return;
        const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
        c->tracker = t;
        c->fd = info != NULL ? (int)info->connect_fd : -1;
        pthread_mutex_lock(&t->lock);
        msse_shim_link_tail(t, c);
        pthread_mutex_unlock(&t->lock);
        *socket_context = c;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        msse_shim_conn *c = *socket_context;
        if (c == NULL) return;
        *socket_context = NULL;
        pthread_mutex_lock(&t->lock);
        msse_shim_unlink(c);
        pthread_mutex_unlock(&t->lock);
        free(c);
    }
}

static void msse_shim_set_deadline(struct MHD_Connection *connection, int arm) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (info == NULL || info->socket_context == NULL) return;
    msse_shim_conn *c = info->socket_context;
    pthread_mutex_lock(&c->tracker->lock);
    if (arm) msse_shim_link_tail(c->tracker, c);
    else msse_shim_unlink(c);
    pthread_mutex_unlock(&c->tracker->lock);
}

void msse_shim_request_arrived(struct MHD_Connection *connection) { msse_shim_set_deadline(connection, 0); }

void msse_shim_request_finished(struct MHD_Connection *connection) { msse_shim_set_deadline(connection, 1); }

unsigned int msse_shim_reap_slow_requests(msse_shim_tracker *t) {
    if (t == NULL) return 0;
    unsigned int n = 0;
    uint64_t now = msse_shim_now_ms();
    pthread_mutex_lock(&t->lock);
    while (t->head.next != &t->head && t->head.next->deadline_ms <= now) {
        msse_shim_conn *c = t->head.next;
        if (c->fd >= 0) {
            shutdown(c->fd, SHUT_RDWR);
            n++;
        }
        msse_shim_unlink(c); /* once */
    }
    pthread_mutex_unlock(&t->lock);
    return n;
}
