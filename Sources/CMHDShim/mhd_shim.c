#include "mhd_shim.h"

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
 * One node per connection, in the connection's socket context. Only connections waiting for a
 * request are linked into their tracker's list (a stream's request has arrived: it is unlinked
 * in O(1), so an idle stream costs the reaper nothing). Every deadline is "now + the one
 * timeout", and a node is linked at the tail when armed, so the list is in deadline order and
 * the reaper stops at the first node not yet due: each pass costs O(1 + due).
 * libmicrohttpd calls NOTIFY_CONNECTION/CLOSED before it closes the socket, and the node is
 * unlinked then under the tracker's lock, so the reaper (which shuts sockets down under the same
 * lock) can never touch a closed, possibly reused, descriptor. */
typedef struct msse_shim_conn {
    struct msse_shim_conn *prev, *next; /* NULL while not linked (no deadline) */
    msse_shim_tracker *tracker;
    int fd;
    uint64_t deadline_ms;
    /* Where the current request target starts, and ends as a C string (set by the URI-log
     * callback, read by the head check, both on the connection's own thread): the end falls short
     * of libmicrohttpd's end of the target when the target holds a raw NUL. */
    const char *target_start, *target_end;
    int target_bad; /* the raw target holds a space, CR, LF or another control byte */
} msse_shim_conn;

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

/* ---- Query size (see mhd_shim.h) ---- */
static const char msse_shim_query_marker = 0;

const void *msse_shim_query_too_large_marker(void) { return &msse_shim_query_marker; }

static const char msse_shim_path_nul_marker_value = 0;

const void *msse_shim_path_nul_marker(void) { return &msse_shim_path_nul_marker_value; }

/* Called by libmicrohttpd with the raw request target, in place in its read buffer, before it
 * splits off and parses the query (the pointer is const only in the callback's signature). */
static void *msse_shim_uri_log(void *cls, const char *uri, struct MHD_Connection *connection) {
    size_t pool = (size_t)(uintptr_t)cls;
    if (uri == NULL) return NULL;
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (info != NULL && info->socket_context != NULL) {
        /* libmicrohttpd 0.9.75 lets a bare CR and spaces into the target (it ends the line at a
         * CR only before a LF, and takes the version from the last space). */
        msse_shim_conn *c = info->socket_context;
        c->target_start = uri;
        c->target_end = uri + strlen(uri);
        c->target_bad = 0;
        for (const char *p = uri; p < c->target_end; p++) {
            if ((unsigned char)*p <= 0x20 || *p == 0x7f) c->target_bad = 1;
        }
    }
    /* libmicrohttpd hands the decoded path over as a C string: "%00" would silently cut it. */
    for (const char *p = uri; *p != '\0' && *p != '?'; p++) {
        if (p[0] == '%' && p[1] == '0' && p[2] == '0') return (void *)&msse_shim_path_nul_marker_value;
    }
    char *query = strchr(uri, '?');
    if (query == NULL) return NULL;
    size_t parameters = 1;
    for (const char *p = query + 1; *p != '\0'; p++) {
        if (*p == '&') parameters++;
    }
    size_t cost = strlen(uri) + parameters * MSSE_SHIM_POOL_ITEM_BYTES;
    size_t room = pool > 2 * MSSE_SHIM_RESPONSE_HEAD_RESERVE ? pool - 2 * MSSE_SHIM_RESPONSE_HEAD_RESERVE : 0;
    if (cost <= room) return NULL;
    query[1] = '\0'; /* libmicrohttpd parses an empty query */
    return (void *)&msse_shim_query_marker;
}

typedef struct msse_shim_footprint {
    const char *last_end; /* the end of the header value that lies furthest in the buffer */
    size_t items, copies;
} msse_shim_footprint;

static enum MHD_Result msse_shim_count_item(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
                                            const char *value, size_t value_size) {
    (void)key;
    (void)key_size;
    msse_shim_footprint *f = cls;
    f->items++;
    if (kind == MHD_HEADER_KIND && value != NULL) {
        if (value + value_size > f->last_end) f->last_end = value + value_size;
        if (key != NULL && key_size == 6 && strncasecmp(key, "Cookie", 6) == 0) f->copies += value_size + 1;
    }
    return MHD_YES;
}

size_t msse_shim_request_footprint(struct MHD_Connection *connection, const char *method, const char *version) {
    msse_shim_footprint f = {NULL, 0, 0};
    MHD_get_connection_values_n(connection, MHD_HEADER_KIND, msse_shim_count_item, &f);
    MHD_get_connection_values_n(connection, MHD_GET_ARGUMENT_KIND, msse_shim_count_item, &f);
    MHD_get_connection_values_n(connection, MHD_COOKIE_KIND, msse_shim_count_item, &f);
    size_t head = 0;
    const char *end = f.last_end;
    if (version != NULL && (end == NULL || version + strlen(version) > end)) end = version + strlen(version);
    /* The head lies in place from the method on; without a plausible layout, count nothing. */
    if (method != NULL && end != NULL && end > method && (size_t)(end - method) < ((size_t)1 << 30))
        head = (size_t)(end - method) + 4;
    return head + f.items * MSSE_SHIM_POOL_ITEM_BYTES + f.copies;
}

typedef ssize_t (*msse_shim_tls_send)(void *session, const void *data, size_t size);

int msse_shim_send_raw_answer(struct MHD_Connection *connection, const void *bytes, size_t size) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    void *session = info != NULL ? info->tls_session : NULL;
    msse_shim_tls_send tls_send = NULL;
    if (session != NULL) {
        /* GnuTLS is loaded with libmicrohttpd; MicroSSE does not link it itself. */
        void *symbol = dlsym(RTLD_DEFAULT, "gnutls_record_send");
        memcpy(&tls_send, &symbol, sizeof tls_send); /* POSIX: dlsym's result as a function */
        if (tls_send == NULL) return -1;
    }
    int fd = msse_shim_connection_fd(connection);
    if (fd < 0) return -1;
    const char *p = bytes;
    size_t left = size;
    for (int attempts = 0; left > 0 && attempts < 50; attempts++) {
        ssize_t n = tls_send != NULL ? tls_send(session, p, left) : send(fd, p, left, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            p += n;
            left -= (size_t)n;
            continue;
        }
        if (n < 0 && tls_send == NULL && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return -1;
        if (n < 0 && tls_send != NULL && n != -28 /* GNUTLS_E_AGAIN */ && n != -52 /* GNUTLS_E_INTERRUPTED */)
            return -1;
        struct pollfd pfd = {fd, POLLOUT, 0};
        (void)poll(&pfd, 1, 10); /* a fresh socket's send buffer holds a short answer: rarely reached */
    }
    return left == 0 ? 0 : -1;
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
    opts[i++] = (struct MHD_OptionItem){MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)msse_shim_uri_log,
                                        (void *)(uintptr_t)(o->connection_memory_limit ? o->connection_memory_limit
                                                                                       : 32u * 1024u)};
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

/* ---- Request head checks (see mhd_shim.h) ----
 * libmicrohttpd 0.9.75 parses the head in place: each line's CR and LF become NULs, the colon
 * becomes a NUL and the value starts after the spaces that follow it; a folded line is appended
 * to a copy of the header's name, and values are measured with strlen. So in a well-formed head
 * each name is followed, within its line, by NUL and blanks up to its value, and each value by
 * NULs and blanks up to the next name. Anything else between them (a byte after a NUL inside a
 * value, a name that is no longer next to its value) means the line was not what the parsed
 * values say. Only bytes between two pointers into the same pool, at most MSSE_SHIM_GAP_MAX
 * apart, are read. */
#define MSSE_SHIM_GAP_MAX 4096

typedef struct msse_shim_header {
    const char *key, *value;
    size_t key_size, value_size;
} msse_shim_header;

typedef struct msse_shim_headers {
    msse_shim_header *items;
    size_t count, capacity;
    int failed;
} msse_shim_headers;

static enum MHD_Result msse_shim_collect_header(void *cls, enum MHD_ValueKind kind, const char *key, size_t key_size,
                                                const char *value, size_t value_size) {
    (void)kind;
    msse_shim_headers *h = cls;
    if (h->count == h->capacity) {
        size_t capacity = h->capacity ? h->capacity * 2 : 32;
        msse_shim_header *items = realloc(h->items, capacity * sizeof *items);
        if (items == NULL) {
            h->failed = 1;
            return MHD_NO;
        }
        h->items = items;
        h->capacity = capacity;
    }
    h->items[h->count++] = (msse_shim_header){key, value != NULL ? value : "", key_size,
                                               value != NULL ? value_size : 0};
    return MHD_YES;
}

static int msse_shim_is_tchar(unsigned char c) {
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return 1;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Whether [from, to) is at most MSSE_SHIM_GAP_MAX bytes of NULs and blanks, starting with a NUL. */
static int msse_shim_blank_gap(const char *from, const char *to) {
    if (to <= from || (size_t)(to - from) > MSSE_SHIM_GAP_MAX || from[0] != '\0') return 0;
    for (const char *p = from; p < to; p++) {
        if (*p != '\0' && *p != ' ' && *p != '\t') return 0;
    }
    return 1;
}

static int msse_shim_equals_ci(const char *a, size_t a_size, const char *b) {
    size_t n = strlen(b);
    if (a_size != n) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z') x = (unsigned char)(x + 32);
        if (y >= 'A' && y <= 'Z') y = (unsigned char)(y + 32);
        if (x != y) return 0;
    }
    return 1;
}

static int msse_shim_refuse(char *reason, size_t size, const char *text) {
    snprintf(reason, size, "%s", text);
    return -1;
}

/* Whether [from, to) holds only NULs, at least `min` and at most `max` of them: a line end (one
 * or two) or a line end and the empty line's (two to four). libmicrohttpd 0.9.75 keeps a value's
 * trailing blanks in the value, so more NULs there were NULs in the line. */
static int msse_shim_nuls(const char *from, const char *to, size_t min, size_t max) {
    if (to < from || (size_t)(to - from) < min || (size_t)(to - from) > max) return 0;
    for (const char *p = from; p < to; p++) {
        if (*p != '\0') return 0;
    }
    return 1;
}

/* `head_end` is where the head ends in the read buffer (the body's first byte), or NULL when
 * libmicrohttpd does not say. A line starting with a NUL ends the head for libmicrohttpd, and a
 * NUL in the last value hides the rest of its line; both leave bytes other than NULs between the
 * last value (or the request line) and head_end. */
static int msse_shim_check_headers(const msse_shim_headers *h, const char *version, const char *head_end,
                                   char *reason, size_t size) {
    /* The request line's end tells the line-end style: two NULs for CRLF, one for a bare LF. */
    size_t line_end = 2;
    if (h->count > 0 && version != NULL && version[0] != '\0') {
        const char *end = version + strlen(version);
        const char *first = h->items[0].key;
        if (first > end && first - end <= 2 && msse_shim_blank_gap(end, first)) line_end = (size_t)(first - end);
        else return msse_shim_refuse(reason, size, "malformed request line or first header line");
    }
    if (h->count == 0 && version != NULL && head_end != NULL &&
        !msse_shim_nuls(version + strlen(version), head_end, 2, 4))
        return msse_shim_refuse(reason, size, "malformed request head (a NUL in a line)");
    int content_lengths = 0, transfer_encodings = 0;
    unsigned long long content_length = 0;
    for (size_t i = 0; i < h->count; i++) {
        const msse_shim_header *x = &h->items[i];
        if (x->key_size == 0) return msse_shim_refuse(reason, size, "empty header name");
        for (size_t j = 0; j < x->key_size; j++) {
            if (!msse_shim_is_tchar((unsigned char)x->key[j]))
                return msse_shim_refuse(reason, size,
                                        "header name is not a token (no space before the colon, no control bytes)");
        }
        for (size_t j = 0; j < x->value_size; j++) {
            unsigned char c = (unsigned char)x->value[j];
            if (c == '\r' || c == '\n' || c == 0x7f || (c < 0x20 && c != '\t'))
                return msse_shim_refuse(reason, size, "header value holds CR, LF, NUL or another control byte");
        }
        if (!msse_shim_blank_gap(x->key + x->key_size, x->value))
            return msse_shim_refuse(reason, size, "malformed header line (obs-fold or a NUL before the value)");
        const char *value_end = x->value + x->value_size;
        if (i + 1 < h->count) {
            if (!msse_shim_nuls(value_end, h->items[i + 1].key, 1, 2))
                return msse_shim_refuse(reason, size, "malformed header line (obs-fold, or a NUL in a value)");
        } else {
            /* The last line: its end and the empty line's, all NULs (what follows is the body). */
            for (size_t j = 0; j < line_end + 1; j++) {
                if (value_end[j] != '\0')
                    return msse_shim_refuse(reason, size, "malformed header line (a NUL in a value)");
            }
            if (head_end != NULL && !msse_shim_nuls(value_end, head_end, 2, 4))
                return msse_shim_refuse(reason, size, "malformed header line (a NUL in a line)");
        }
        if (msse_shim_equals_ci(x->key, x->key_size, "Content-Length")) {
            if (x->value_size == 0 || x->value_size > 18)
                return msse_shim_refuse(reason, size, "Content-Length must be 1 to 18 decimal digits");
            unsigned long long n = 0;
            for (size_t j = 0; j < x->value_size; j++) {
                if (x->value[j] < '0' || x->value[j] > '9')
                    return msse_shim_refuse(reason, size, "Content-Length must be 1 to 18 decimal digits");
                n = n * 10 + (unsigned long long)(x->value[j] - '0');
            }
            if (content_lengths++ > 0 && n != content_length)
                return msse_shim_refuse(reason, size, "conflicting Content-Length headers");
            content_length = n;
        } else if (msse_shim_equals_ci(x->key, x->key_size, "Transfer-Encoding")) {
            if (transfer_encodings++ > 0)
                return msse_shim_refuse(reason, size, "more than one Transfer-Encoding header");
            if (!msse_shim_equals_ci(x->value, x->value_size, "chunked"))
                return msse_shim_refuse(reason, size, "Transfer-Encoding other than exactly 'chunked' is not supported");
        }
    }
    if (content_lengths > 0 && transfer_encodings > 0)
        return msse_shim_refuse(reason, size, "Content-Length together with Transfer-Encoding");
    return 0;
}

int msse_shim_check_request_head(struct MHD_Connection *connection, const char *method, const char *version,
                                 char *reason, size_t reason_size) {
    msse_shim_headers h = {NULL, 0, 0, 0};
    MHD_get_connection_values_n(connection, MHD_HEADER_KIND, msse_shim_collect_header, &h);
    /* libmicrohttpd 0.9.75 counts the head from the method's first byte to the body's. */
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    const char *head_end = method != NULL && info != NULL && info->header_size > 0 ? method + info->header_size : NULL;
    /* libmicrohttpd ends the target at the space before the version (which it replaces with a
     * NUL) and searches it for '?' over that length; a raw NUL inside ends the path early. With
     * no request deadline (connection timeout 0) there is no socket context and no such check. */
    const char *target_start = NULL, *target_end = NULL;
    int target_bad = 0;
    const union MHD_ConnectionInfo *sc = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    if (sc != NULL && sc->socket_context != NULL) {
        msse_shim_conn *c = sc->socket_context;
        target_start = c->target_start;
        target_end = c->target_end;
        target_bad = c->target_bad;
        c->target_start = c->target_end = NULL;
        c->target_bad = 0;
    }
    /* The method ends at the NUL libmicrohttpd put over its space; only spaces follow up to the
     * target. A raw NUL in the method ends it sooner. */
    int method_ok = 1;
    if (method != NULL && target_start != NULL) {
        const char *p = method + strlen(method);
        if (p >= target_start || (size_t)(target_start - p) > MSSE_SHIM_GAP_MAX) method_ok = 0;
        for (p++; method_ok && p < target_start; p++) {
            if (*p != ' ') method_ok = 0;
        }
    }
    if (method != NULL) {
        for (const char *p = method; *p != '\0'; p++) {
            if (!msse_shim_is_tchar((unsigned char)*p)) method_ok = 0;
        }
    }
    /* The version, when given, is HTTP/DIGIT.DIGIT (libmicrohttpd 0.9.75 answers HRTP/1.1). */
    int version_ok = 1;
    if (version != NULL && version[0] != '\0') {
        version_ok = strlen(version) == 8 && strncmp(version, "HTTP/", 5) == 0 && version[5] >= '0' &&
                     version[5] <= '9' && version[6] == '.' && version[7] >= '0' && version[7] <= '9';
    }
    int result;
    if (!method_ok)
        result = msse_shim_refuse(reason, reason_size, "the request method is not a token (a NUL or a control byte)");
    else if (!version_ok)
        result = msse_shim_refuse(reason, reason_size, "malformed HTTP version in the request line");
    else if (target_bad)
        result = msse_shim_refuse(reason, reason_size, "a space, CR, LF or control byte in the request target");
    else if (target_end != NULL && version != NULL && version[0] != '\0' && target_end != version - 1)
        result = msse_shim_refuse(reason, reason_size, "a NUL in the request target");
    else
        result = h.failed ? msse_shim_refuse(reason, reason_size, "out of memory checking the request head")
                          : msse_shim_check_headers(&h, version, head_end, reason, reason_size);
    free(h.items);
    return result;
}
