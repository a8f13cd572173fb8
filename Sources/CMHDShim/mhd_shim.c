/* The daemon, its logger, and the small connection queries Swift cannot make itself. */
#include "shim_internal.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

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
    /* The tracker answers connections over the per-address limit with 429; libmicrohttpd's own
     * limit, at twice it, bounds how many slots one address can take while they wait for it
     * (past it, connections are closed at accept without an answer). */
    if (o->per_ip_connection_limit)
        opts[i++] = (struct MHD_OptionItem){MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                                            o->per_ip_connection_limit > UINT_MAX / 2 ? (intptr_t)UINT_MAX
                                            : (intptr_t)o->per_ip_connection_limit * 2,
                                            NULL};
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

/* Set on every thread that has run a callback of libmicrohttpd's (its polling threads), for the
 * thread's life. */
static _Thread_local int msse_shim_daemon_thread_mark;

void msse_shim_mark_daemon_thread(void) { msse_shim_daemon_thread_mark = 1; }

int msse_shim_on_daemon_thread(void) { return msse_shim_daemon_thread_mark; }

unsigned int msse_shim_daemon_connections(struct MHD_Daemon *daemon) {
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return info != NULL ? info->num_connections : 0;
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

size_t msse_shim_chunk_head(size_t size, char out[MSSE_SHIM_CHUNK_HEAD_MAX]) {
    /* Hex digits, most significant first, then CRLF, built from the end of a scratch buffer. */
    char digits[MSSE_SHIM_CHUNK_HEAD_MAX];
    char *end = digits + sizeof digits;
    char *p = end;
    *--p = '\n';
    *--p = '\r';
    do {
        *--p = "0123456789ABCDEF"[size & 15];
        size >>= 4;
    } while (size != 0);
    size_t n = (size_t)(end - p);
    memcpy(out, p, n);
    return n;
}

ssize_t msse_shim_send_chunk_parts(int fd, const msse_shim_part *parts, int count, size_t *chunk_length) {
    if (count < 1 || count > MSSE_SHIM_CHUNK_PARTS_MAX) return -1;
    size_t size = 0;
    for (int i = 0; i < count; i++) size += parts[i].size;
    char head[MSSE_SHIM_CHUNK_HEAD_MAX];
    size_t n = msse_shim_chunk_head(size, head);
    *chunk_length = n + size + 2;
    struct iovec vector[MSSE_SHIM_CHUNK_PARTS_MAX + 2];
    vector[0] = (struct iovec){head, n};
    for (int i = 0; i < count; i++) vector[i + 1] = (struct iovec){(void *)parts[i].bytes, parts[i].size};
    vector[count + 1] = (struct iovec){(void *)"\r\n", 2};
    struct msghdr message = {.msg_iov = vector, .msg_iovlen = (size_t)count + 2};
    ssize_t sent = sendmsg(fd, &message, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent >= 0) return sent;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
}

ssize_t msse_shim_send_now(int fd, const void *bytes, size_t size) {
    ssize_t sent = send(fd, bytes, size, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent >= 0) return sent;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
}

int msse_shim_request_is_http11(struct MHD_Connection *connection) {
    const union MHD_ConnectionInfo *sc = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return sc != NULL && sc->socket_context != NULL && ((msse_shim_conn *)sc->socket_context)->http11;
}

int msse_shim_stream_is_plain_chunked(struct MHD_Connection *connection) {
    const union MHD_ConnectionInfo *tls = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (tls != NULL && tls->tls_session != NULL) return 0;
    return msse_shim_request_is_http11(connection);
}

int msse_shim_connection_fd(struct MHD_Connection *connection) {
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
    return info != NULL ? (int)info->connect_fd : -1;
}

/* The first header of a response, copied: deleting a header frees its strings, and
 * MHD_del_response_header reads the name it was given once more after the free when the name is
 * as long as "Transfer-Encoding" or "Date". */
typedef struct {
    char *name, *value;
} msse_shim_header_copy;

static enum MHD_Result msse_shim_copy_first_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                                   const char *value) {
    (void)kind;
    msse_shim_header_copy *copy = cls;
    copy->name = strdup(key);
    copy->value = strdup(value);
    return MHD_NO; /* the first one only */
}

int msse_shim_response_drop_headers(struct MHD_Response *response) {
    int dropped = 0;
    /* At most one deletion per line there is: a deletion that reports success without removing
     * the line (libmicrohttpd treats `Connection` by its tokens) cannot loop. */
    int lines = MHD_get_response_headers(response, NULL, NULL);
    while (dropped < lines) {
        msse_shim_header_copy copy = {NULL, NULL};
        if (MHD_get_response_headers(response, msse_shim_copy_first_header, &copy) == 0) break;
        int deleted = copy.name != NULL && copy.value != NULL &&
                      MHD_del_response_header(response, copy.name, copy.value) == MHD_YES;
        free(copy.name);
        free(copy.value);
        if (!deleted) break; /* out of memory, or a header libmicrohttpd keeps: leave the rest */
        dropped++;
    }
    return dropped;
}
