/* Request deadlines: a request must arrive in full within the connection timeout. */
#include "shim_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

struct msse_shim_tracker {
    pthread_mutex_t lock;
    msse_shim_conn head; /* sentinel of a circular list, in deadline order */
    uint64_t timeout_ms; /* 0: no request deadlines */
    /* Connections over the per-address limit, waiting for their request (answered 429) for at
     * most MSSE_SHIM_REFUSAL_MS: a sentinel of a second list, in deadline order too. */
    msse_shim_conn refused;
    msse_shim_peers *peers; /* NULL: no per-address limit */
    unsigned int per_ip_limit;
};

/* How long a connection over the per-address limit may take to send the request its 429
 * answers: short, so refused connections hold few of the daemon's slots. */
#define MSSE_SHIM_REFUSAL_MS 2000u

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

/* Links `c` at the tail of the list `head` with a deadline `delay_ms` from now: every node of a
 * list gets the same delay, so each list stays in deadline order. */
static void msse_shim_link_tail(msse_shim_conn *head, msse_shim_conn *c, uint64_t delay_ms) {
    msse_shim_unlink(c);
    c->deadline_ms = msse_shim_now_ms() + delay_ms;
    c->next = head;
    c->prev = head->prev;
    head->prev->next = c;
    head->prev = c;
}

msse_shim_tracker *msse_shim_tracker_create(unsigned int request_timeout_seconds, unsigned int per_ip_limit,
                                            unsigned int connection_limit) {
    msse_shim_tracker *t = calloc(1, sizeof *t);
    if (t == NULL) return NULL;
    if (per_ip_limit > 0 && (t->peers = msse_shim_peers_create(connection_limit)) == NULL) {
        free(t);
        return NULL;
    }
    pthread_mutex_init(&t->lock, NULL);
    t->head.prev = t->head.next = &t->head;
    t->refused.prev = t->refused.next = &t->refused;
    t->timeout_ms = (uint64_t)request_timeout_seconds * 1000u;
    t->per_ip_limit = per_ip_limit;
    return t;
}

static void msse_shim_free_list(msse_shim_conn *head) {
    msse_shim_conn *c = head->next;
    while (c != head) {
        msse_shim_conn *next = c->next;
        free(c);
        c = next;
    }
    head->next = head->prev = head;
}

void msse_shim_tracker_destroy(msse_shim_tracker *t) {
    if (t == NULL) return;
    /* After MHD_stop_daemon every connection has been notified closed, which freed its node;
     * free any linked straggler. The lock orders this after the last notification (the
     * caller's thread may be another). */
    pthread_mutex_lock(&t->lock);
    msse_shim_free_list(&t->head);
    msse_shim_free_list(&t->refused);
    pthread_mutex_unlock(&t->lock);
    pthread_mutex_destroy(&t->lock);
    msse_shim_peers_destroy(t->peers);
    free(t);
}

void msse_shim_notify_connection(void *cls, struct MHD_Connection *connection, void **socket_context,
                                 enum MHD_ConnectionNotificationCode code) {
    msse_shim_tracker *t = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        msse_shim_mark_daemon_thread();
        msse_shim_conn *c = calloc(1, sizeof *c);
        if (c == NULL) return;
        const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
        c->tracker = t;
        c->fd = info != NULL ? (int)info->connect_fd : -1;
        unsigned char key[16];
        int keyed = 0;
        if (t->peers != NULL) {
            const union MHD_ConnectionInfo *peer =
                MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
            keyed = peer != NULL && msse_shim_address_key(peer->client_addr, key);
        }
        pthread_mutex_lock(&t->lock);
        if (keyed) {
            memcpy(c->address, key, sizeof key);
            c->counted = 1;
            c->over_limit = msse_shim_peers_add(t->peers, key) > t->per_ip_limit;
        }
        if (c->over_limit) msse_shim_link_tail(&t->refused, c, MSSE_SHIM_REFUSAL_MS);
        else if (t->timeout_ms > 0) msse_shim_link_tail(&t->head, c, t->timeout_ms);
        pthread_mutex_unlock(&t->lock);
        *socket_context = c;
        /* libmicrohttpd 0.9.75 cannot time out a TLS connection still in its handshake: the
         * timeout marks it closed, but its idle handler stops at the unfinished handshake before
         * it reaches the clean-up, so the descriptor stays open for the daemon's life and the
         * polling loop, finding it due again on every pass, never sleeps. The handshake fails
         * cleanly instead when the tracker shuts the socket down (GnuTLS reads the end of the
         * stream), so the tracker must always come first: libmicrohttpd's timeout is off for a
         * TLS connection until its first request has arrived (msse_shim_request_arrived turns
         * it back on), and the tracker's deadline, from the connection's start, bounds it. */
        if (t->timeout_ms > 0 || c->over_limit) {
            const union MHD_ConnectionInfo *tls = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_GNUTLS_SESSION);
            if (tls != NULL && tls->tls_session != NULL &&
                MHD_set_connection_option(connection, MHD_CONNECTION_OPTION_TIMEOUT, 0u) == MHD_YES)
                c->mhd_timeout_off = 1;
        }
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        msse_shim_conn *c = *socket_context;
        if (c == NULL) return;
        *socket_context = NULL;
        pthread_mutex_lock(&t->lock);
        msse_shim_unlink(c);
        if (c->counted) msse_shim_peers_remove(t->peers, c->address);
        pthread_mutex_unlock(&t->lock);
        free(c);
    }
}

static void msse_shim_set_deadline(struct MHD_Connection *connection, int arm) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (info == NULL || info->socket_context == NULL) return;
    msse_shim_conn *c = info->socket_context;
    msse_shim_tracker *t = c->tracker;
    if (!arm && c->mhd_timeout_off) {
        /* The handshake is over: libmicrohttpd's idle timeout applies again (the connection's
         * thread, like every call of this function). */
        c->mhd_timeout_off = 0;
        (void)MHD_set_connection_option(connection, MHD_CONNECTION_OPTION_TIMEOUT,
                                        (unsigned int)(t->timeout_ms / 1000u));
    }
    /* A refused connection keeps its short deadline until libmicrohttpd closes it. */
    if (c->over_limit) return;
    pthread_mutex_lock(&t->lock);
    if (arm && t->timeout_ms > 0) msse_shim_link_tail(&t->head, c, t->timeout_ms);
    else msse_shim_unlink(c);
    pthread_mutex_unlock(&t->lock);
}

int msse_shim_over_ip_limit(struct MHD_Connection *connection) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (info == NULL || info->socket_context == NULL) return 0;
    /* Set once, before libmicrohttpd reads from the connection, on the connection's own thread. */
    return ((msse_shim_conn *)info->socket_context)->over_limit;
}

void msse_shim_request_arrived(struct MHD_Connection *connection) { msse_shim_set_deadline(connection, 0); }

void msse_shim_request_finished(struct MHD_Connection *connection) { msse_shim_set_deadline(connection, 1); }

unsigned int msse_shim_reap_slow_requests(msse_shim_tracker *t) {
    if (t == NULL) return 0;
    unsigned int n = 0;
    uint64_t now = msse_shim_now_ms();
    pthread_mutex_lock(&t->lock);
    msse_shim_conn *lists[] = {&t->head, &t->refused};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        msse_shim_conn *head = lists[i];
        while (head->next != head && head->next->deadline_ms <= now) {
            msse_shim_conn *c = head->next;
            if (c->fd >= 0) {
                shutdown(c->fd, SHUT_RDWR);
                n++;
            }
            msse_shim_unlink(c); /* once */
        }
    }
    pthread_mutex_unlock(&t->lock);
    return n;
}
