// Typed wrappers for the libmicrohttpd calls Swift cannot make (they are variadic), in the
// spirit of swift-nio's CNIOLinux. Only Sources/MicroSSE/Transport imports this module.
#ifndef MSSE_MHD_SHIM_H
#define MSSE_MHD_SHIM_H

#include <stddef.h>
#include <stdint.h>
#include <microhttpd.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Internal to MicroSSE: none of these is part of libmicrosse's exported ABI. */
#pragma GCC visibility push(hidden)

/// A formatted log line from libmicrohttpd (MHD hands out a printf format and a va_list, which
/// Swift cannot read; the shim formats it).
typedef void (*msse_shim_log_cb)(void *cls, const char *message);

/// Request deadlines (slowloris defence). libmicrohttpd 0.9.75's connection timeout counts idle
/// time only, and every byte a client trickles restarts it, so a request sent a byte at a time
/// is never timed out. A tracker follows every connection of one daemon (through
/// MHD_OPTION_NOTIFY_CONNECTION) with a deadline for its current request to arrive in full.
typedef struct msse_shim_tracker msse_shim_tracker;

/// A tracker whose requests must arrive within `request_timeout_seconds` of the connection
/// opening, or of the previous request completing. Free it with msse_shim_tracker_destroy only
/// after MHD_stop_daemon has returned.
msse_shim_tracker *msse_shim_tracker_create(unsigned int request_timeout_seconds);
void msse_shim_tracker_destroy(msse_shim_tracker *tracker);

/// Shuts down (never closes: libmicrohttpd owns the socket and closes it when it sees the
/// shutdown) every connection whose request is past its deadline. Returns how many. Any thread.
unsigned int msse_shim_reap_slow_requests(msse_shim_tracker *tracker);

/// The connection's request has arrived in full (or is being answered): no deadline until
/// msse_shim_request_finished. Call from the access handler.
void msse_shim_request_arrived(struct MHD_Connection *connection);

/// The connection's request is done; the next one on this connection gets a new deadline.
/// Call from the request-completed callback.
void msse_shim_request_finished(struct MHD_Connection *connection);

/// Everything MicroSSE sets when it starts a daemon. Zero means "libmicrohttpd's default".
typedef struct msse_shim_daemon_options {
    unsigned int flags;            /* MHD_FLAG bits */
    const char *host;              /* numeric IPv4 or IPv6 address to bind, NULL = any */
    uint16_t port;                 /* 0 = ephemeral */
    unsigned int connection_limit;
    size_t connection_memory_limit;
    unsigned int connection_timeout; /* seconds, for non-suspended connections */
    unsigned int thread_pool_size;   /* 0 or 1 = one polling thread */
    unsigned int per_ip_connection_limit;
    const char *tls_cert_pem;      /* both set = HTTPS */
    const char *tls_key_pem;
    MHD_AccessHandlerCallback access_handler;
    void *access_handler_cls;
    MHD_RequestCompletedCallback completed;
    void *completed_cls;
    msse_shim_log_cb logger;       /* process-wide: every daemon must pass the same function */
    void *logger_cls;
    msse_shim_tracker *tracker;    /* request deadlines; NULL = none */
} msse_shim_daemon_options;

/// MHD_start_daemon is variadic; this passes the options above as MHD_OPTION_* pairs.
/// Returns NULL when the daemon cannot start (bad address, port in use, TLS error) and
/// writes a reason into `error` (at most `error_size` bytes, NUL-terminated).
struct MHD_Daemon *msse_shim_start_daemon(const msse_shim_daemon_options *options, char *error,
                                          size_t error_size);

/// The port the daemon is bound to (MHD_get_daemon_info is variadic). 0 on failure.
uint16_t msse_shim_daemon_port(struct MHD_Daemon *daemon);

/// The peer's numeric address as text, e.g. "127.0.0.1" (MHD_get_connection_info is variadic).
/// Returns 0 on success, -1 when unknown.
int msse_shim_client_address(struct MHD_Connection *connection, char *buffer, size_t size);

/// The connection's socket (MHD_get_connection_info is variadic), or -1 when unknown. MicroSSE
/// uses it only to shut down (never close) the socket of a stream it has failed while the peer
/// is not reading, so libmicrohttpd, which owns the socket, notices at once and closes it.
int msse_shim_connection_fd(struct MHD_Connection *connection);


#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

#endif
