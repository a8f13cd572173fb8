#include "mhd_shim.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* MHD hands its logger a printf format and a va_list; Swift can read neither, so this formats
 * the line and calls the Swift callback. Every server passes the same Swift function, so one
 * process-wide slot holds it; the per-daemon `cls` travels through MHD as usual. */
static msse_shim_log_cb msse_shim_logger_cb = NULL;

static void msse_shim_log_trampoline(void *cls, const char *fmt, va_list ap) {
    msse_shim_log_cb cb = __atomic_load_n(&msse_shim_logger_cb, __ATOMIC_ACQUIRE);
    if (cb == NULL) return;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
    cb(cls, line);
}

/* ---- Request deadlines (see mhd_shim.h) ----
 * One node per connection, in the connection's socket context, linked into its tracker's list.
 * libmicrohttpd calls NOTIFY_CONNECTION/CLOSED before it closes the socket, and the node is
 * unlinked then under the tracker's lock, so the reaper (which shuts sockets down under the same
 * lock) can never touch a closed, possibly reused, descriptor. */
typedef struct msse_shim_conn {
    struct msse_shim_conn *prev, *next;
    msse_shim_tracker *tracker;
    int fd;
    uint64_t deadline_ms; /* 0 = none: the request has arrived */
} msse_shim_conn;

struct msse_shim_tracker {
    pthread_mutex_t lock;
    msse_shim_conn head; /* sentinel of a circular list */
    uint64_t timeout_ms;
};

static uint64_t msse_shim_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
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
    /* After MHD_stop_daemon every connection has been notified closed; free any stragglers.
     * The lock orders this after the last notification (the caller's thread may be another). */
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

static void msse_shim_notify_connection(void *cls, struct MHD_Connection *connection, void **socket_context,
                                        enum MHD_ConnectionNotificationCode code) {
    msse_shim_tracker *t = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        msse_shim_conn *c = calloc(1, sizeof *c);
        if (c == NULL) return;
        const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
        c->tracker = t;
        c->fd = info != NULL ? (int)info->connect_fd : -1;
        pthread_mutex_lock(&t->lock);
        c->deadline_ms = msse_shim_now_ms() + t->timeout_ms;
        c->next = &t->head;
        c->prev = t->head.prev;
        t->head.prev->next = c;
        t->head.prev = c;
        pthread_mutex_unlock(&t->lock);
        *socket_context = c;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        msse_shim_conn *c = *socket_context;
        if (c == NULL) return;
        *socket_context = NULL;
        pthread_mutex_lock(&t->lock);
        c->prev->next = c->next;
        c->next->prev = c->prev;
        pthread_mutex_unlock(&t->lock);
        free(c);
    }
}

static void msse_shim_set_deadline(struct MHD_Connection *connection, int arm) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (info == NULL || info->socket_context == NULL) return;
    msse_shim_conn *c = info->socket_context;
    pthread_mutex_lock(&c->tracker->lock);
    c->deadline_ms = arm ? msse_shim_now_ms() + c->tracker->timeout_ms : 0;
    pthread_mutex_unlock(&c->tracker->lock);
}

void msse_shim_request_arrived(struct MHD_Connection *connection) { msse_shim_set_deadline(connection, 0); }

void msse_shim_request_finished(struct MHD_Connection *connection) { msse_shim_set_deadline(connection, 1); }

unsigned int msse_shim_reap_slow_requests(msse_shim_tracker *t) {
    if (t == NULL) return 0;
    unsigned int n = 0;
    uint64_t now = msse_shim_now_ms();
    pthread_mutex_lock(&t->lock);
    for (msse_shim_conn *c = t->head.next; c != &t->head; c = c->next) {
        if (c->deadline_ms != 0 && c->deadline_ms <= now && c->fd >= 0) {
            shutdown(c->fd, SHUT_RDWR);
            c->deadline_ms = 0; /* once */
            n++;
        }
    }
    pthread_mutex_unlock(&t->lock);
    return n;
}

struct MHD_Daemon *msse_shim_start_daemon(const msse_shim_daemon_options *o, char *error,
                                          size_t error_size) {
    struct sockaddr_storage addr;
    memset(&addr, 0, sizeof addr);
    struct sockaddr *bind_addr = NULL;
    unsigned int flags = o->flags;
    if (error_size > 0) error[0] = '\0';
    if (o->host != NULL && o->host[0] != '\0') {
        struct sockaddr_in *in4 = (struct sockaddr_in *)&addr;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&addr;
        if (inet_pton(AF_INET, o->host, &in4->sin_addr) == 1) {
            in4->sin_family = AF_INET;
            in4->sin_port = htons(o->port);
        } else if (inet_pton(AF_INET6, o->host, &in6->sin6_addr) == 1) {
            in6->sin6_family = AF_INET6;
            in6->sin6_port = htons(o->port);
            flags |= MHD_USE_IPv6;
        } else {
            snprintf(error, error_size, "host '%s' is not a numeric IPv4 or IPv6 address", o->host);
            return NULL;
        }
        bind_addr = (struct sockaddr *)&addr;
    }

    struct MHD_OptionItem opts[16];
    size_t i = 0;
    if (bind_addr != NULL) opts[i++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, bind_addr};
    if (o->connection_limit)
        opts[i++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, (intptr_t)o->connection_limit, NULL};
    if (o->connection_memory_limit)
        opts[i++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                                            (intptr_t)o->connection_memory_limit, NULL};
    if (o->connection_timeout)
        opts[i++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)o->connection_timeout, NULL};
    if (o->thread_pool_size > 1)
        opts[i++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)o->thread_pool_size, NULL};
    if (o->per_ip_connection_limit)
        opts[i++] = (struct MHD_OptionItem){MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                                            (intptr_t)o->per_ip_connection_limit, NULL};
    if (o->completed != NULL)
        opts[i++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)o->completed, o->completed_cls};
    if (o->logger != NULL) {
        __atomic_store_n(&msse_shim_logger_cb, o->logger, __ATOMIC_RELEASE);
        flags |= MHD_USE_ERROR_LOG;
        opts[i++] = (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER,
                                            (intptr_t)msse_shim_log_trampoline, o->logger_cls};
    }
    if (o->tracker != NULL)
        opts[i++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_CONNECTION, (intptr_t)msse_shim_notify_connection,
                                            o->tracker};
    if (o->tls_cert_pem != NULL && o->tls_key_pem != NULL) {
        flags |= MHD_USE_TLS;
        opts[i++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, (void *)o->tls_cert_pem};
        opts[i++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, (void *)o->tls_key_pem};
    }
    opts[i++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};

    struct MHD_Daemon *d = MHD_start_daemon(flags, o->port, NULL, NULL, o->access_handler,
                                            o->access_handler_cls, MHD_OPTION_ARRAY, opts,
                                            MHD_OPTION_END);
    if (d == NULL) {
        snprintf(error, error_size, "libmicrohttpd could not start on %s:%u (address in use, "
                 "or TLS certificate/key rejected)", o->host ? o->host : "*", (unsigned)o->port);
    }
    return d;
}

uint16_t msse_shim_daemon_port(struct MHD_Daemon *daemon) {
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
    return info != NULL ? info->port : 0;
}

int msse_shim_client_address(struct MHD_Connection *connection, char *buffer, size_t size) {
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (info == NULL || info->client_addr == NULL || size == 0) return -1;
    const struct sockaddr *sa = info->client_addr;
    const void *src = NULL;
    if (sa->sa_family == AF_INET) src = &((const struct sockaddr_in *)sa)->sin_addr;
    else if (sa->sa_family == AF_INET6) src = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (src == NULL || inet_ntop(sa->sa_family, src, buffer, (socklen_t)size) == NULL) return -1;
    return 0;
}

int msse_shim_connection_fd(struct MHD_Connection *connection) {
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    return info != NULL ? (int)info->connect_fd : -1;
}
