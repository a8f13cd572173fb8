// Typed wrappers for the libmicrohttpd calls Swift cannot make (they are variadic), in the
// spirit of swift-nio's CNIOLinux. Only MicroSSETransport imports this module.
#ifndef MSSE_MHD_SHIM_H
#define MSSE_MHD_SHIM_H

#include <stddef.h>
#include <sys/types.h>
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
/// opening, or of the previous request completing (0: no deadlines). With `per_ip_limit` > 0 it
/// also counts the open connections of each client address (in a table sized once for
/// `connection_limit` connections): a connection that takes its address over the limit is
/// marked (msse_shim_over_ip_limit) and must send its request within 2 s. Free it with
/// msse_shim_tracker_destroy only after MHD_stop_daemon has returned. NULL when out of memory.
msse_shim_tracker *msse_shim_tracker_create(unsigned int request_timeout_seconds, unsigned int per_ip_limit,
                                            unsigned int connection_limit);
void msse_shim_tracker_destroy(msse_shim_tracker *tracker);

/// Shuts down (never closes: libmicrohttpd owns the socket and closes it when it sees the
/// shutdown) every connection whose request is past its deadline. Returns how many. Any thread.
/// Only connections waiting for a request are listed, in deadline order: a pass costs O(1 + the
/// connections due), however many streams are open.
unsigned int msse_shim_reap_slow_requests(msse_shim_tracker *tracker);

/// The connection's request has arrived in full (or is being answered): no deadline until
/// msse_shim_request_finished. Call from the access handler.
void msse_shim_request_arrived(struct MHD_Connection *connection);

/// The connection's request is done; the next one on this connection gets a new deadline.
/// Call from the request-completed callback.
void msse_shim_request_finished(struct MHD_Connection *connection);

/// The longest size line of a chunk: 16 hex digits and CRLF.
#define MSSE_SHIM_CHUNK_HEAD_MAX 24
/// Writes the size line of a `size`-byte chunk (hex digits, CRLF) to `out`; returns its length.
size_t msse_shim_chunk_head(size_t size, char out[MSSE_SHIM_CHUNK_HEAD_MAX]);
/// One piece of a chunk for `msse_shim_send_chunk_parts`.
typedef struct {
    const void *bytes;
    size_t size;
} msse_shim_part;
/// The most pieces `msse_shim_send_chunk_parts` takes.
#define MSSE_SHIM_CHUNK_PARTS_MAX 8
/// Writes the `count` pieces `parts` (1 to `MSSE_SHIM_CHUNK_PARTS_MAX`), one after the other, to
/// `fd` as one HTTP/1.1 chunk (size line, the pieces, CRLF) in one non-blocking `sendmsg`,
/// without copying them, and sets `chunk_length` to the chunk's length. Returns the bytes of the
/// chunk written (all of them, part of them, or 0 when the socket is full), or -1 when the write
/// failed or `count` is out of range.
ssize_t msse_shim_send_chunk_parts(int fd, const msse_shim_part *parts, int count, size_t *chunk_length);
/// One non-blocking `send` of `size` bytes (the rest of a chunk). Returns the bytes written (0
/// when the socket is full), or -1 when the write failed.
ssize_t msse_shim_send_now(int fd, const void *bytes, size_t size);

/// Frees every header line of `response`, a stream's response whose reply head libmicrohttpd
/// has already built: it reads a response's headers only to build the head (and the chunked
/// trailer, which takes footers: a stream has none), and an idle stream would otherwise keep
/// about 400 bytes of copies for its whole life. Call on the connection's thread, from the
/// content reader (whose first call comes after the head is built). Returns how many it freed.
int msse_shim_response_drop_headers(struct MHD_Response *response);

/// Whether the connection's current request is HTTP/1.1 (its stream is chunked).
int msse_shim_request_is_http11(struct MHD_Connection *connection);

/// Whether a stream response queued now on `connection` goes out as plain (not TLS) HTTP/1.1
/// chunks on its socket: what a direct write to the socket must then look like. Call on the
/// connection's thread (the access handler).
int msse_shim_stream_is_plain_chunked(struct MHD_Connection *connection);

/// Whether the connection took its client address over the tracker's per-address limit (its
/// request must be refused). Call from the access handler.
int msse_shim_over_ip_limit(struct MHD_Connection *connection);

/// epoll for the peer watcher (shim_epoll.c): an instance, registrations keyed by a 64-bit
/// token, and a wait that reports each event as the masks below. Each returns what the epoll
/// call it wraps returns (-1 with errno on failure).
enum {
    MSSE_SHIM_READABLE = 1,            /* EPOLLIN */
    MSSE_SHIM_PEER_GONE = 2,           /* EPOLLHUP or EPOLLERR: reset, or a write answered by one */
    MSSE_SHIM_PEER_CLOSED_SENDING = 4, /* EPOLLRDHUP: the peer sent its FIN */
};
typedef struct {
    uint32_t mask;
    uint64_t token;
} msse_shim_epoll_event;
int msse_shim_epoll_create(void);
/// A blocking eventfd (close-on-exec): the suspended-stream writer's wake-up.
int msse_shim_eventfd(void);
/// Watches `fd` once for room to write (EPOLLOUT, one-shot; added, or re-armed if already there).
int msse_shim_epoll_watch_writable(int epoll_fd, int fd, uint64_t token);
/// Level-triggered EPOLLIN (a wake-up pipe).
int msse_shim_epoll_watch_readable(int epoll_fd, int fd, uint64_t token);
/// Edge-triggered EPOLLRDHUP | EPOLLHUP | EPOLLERR: a stream's socket, registered once.
int msse_shim_epoll_watch_peer(int epoll_fd, int fd, uint64_t token);
int msse_shim_epoll_unwatch(int epoll_fd, int fd);
/// Waits up to `timeout_ms` for at most `max` (at most 256) events into `events`.
int msse_shim_epoll_wait(int epoll_fd, msse_shim_epoll_event *events, int max, int timeout_ms);

/// Checks the request head libmicrohttpd has parsed against RFC 9112's framing rules, which
/// libmicrohttpd 0.9.75 does not enforce (its MHD_OPTION_STRICT_FOR_CLIENT only adds the Host
/// check): header names must be tokens; values must not hold CR, LF or NUL; no obs-fold line;
/// Content-Length only as digits, and one value; Transfer-Encoding only as exactly `chunked`,
/// and never with Content-Length. `version` is the access handler's version argument. Call on
/// the access handler's first call. Returns 0 when the head is acceptable, else -1 with a
/// one-line reason in `reason`.
///
/// libmicrohttpd parses the head in place in the connection's read buffer (NULs over the colon
/// and the line ends) and measures values with strlen, so a NUL inside a value or a folded line
/// leaves no trace in the values it hands out; they are found from where the names and values
/// lie in that buffer (see the definition). `method` is the access handler's `method` argument:
/// the head's first byte, where libmicrohttpd's header size is counted from.
int msse_shim_check_request_head(struct MHD_Connection *connection, const char *method, const char *version,
                                 char *reason, size_t reason_size);

/// What libmicrohttpd 0.9.75 spends of a connection's pool on each parsed header, query
/// parameter or cookie besides its bytes (its header record, rounded to the pool's alignment).
#define MSSE_SHIM_POOL_ITEM_BYTES 64

/// The pool kept free for the response head when judging a request's size.
#define MSSE_SHIM_RESPONSE_HEAD_RESERVE 512

/// The access handler's first `*con_cls` when the request's query was too large for the
/// connection's pool: libmicrohttpd 0.9.75 ignores running out of pool while it parses query
/// parameters (it keeps the ones that fit and goes on), and the request then stalls or its
/// response head no longer fits, so it is closed without an answer. The shim's URI-log callback
/// (installed by msse_shim_start_daemon) sees the raw request target first; when the query would
/// not leave room for headers and a response head it empties the query in place (libmicrohttpd
/// parses nothing) and hands this marker to the access handler, which answers 414.
const void *msse_shim_query_too_large_marker(void);
/// The `con_cls` the URI-log callback leaves for a request whose path holds an encoded NUL
/// (`%00`): libmicrohttpd would hand over the decoded path cut at the NUL.
const void *msse_shim_path_nul_marker(void);

/// Bytes of the connection's pool the request holds: its request line and header lines (parsed
/// in place), a record per header, query parameter and cookie, and the copy of the Cookie
/// header. Call on the access handler's first call, with its method and version arguments.
size_t msse_shim_request_footprint(struct MHD_Connection *connection, const char *method, const char *version);

/// Writes a complete response straight to the connection (through its TLS session when it has
/// one), for the one case where libmicrohttpd cannot: a request head that filled the pool so far
/// that no response head fits any more (libmicrohttpd would close without an answer). Only on
/// the access handler's first call, before anything was queued; the caller then returns MHD_NO.
/// Returns 0 when every byte was written, -1 otherwise.
int msse_shim_send_raw_answer(struct MHD_Connection *connection, const void *bytes, size_t size);

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

/// Whether the calling thread is one of libmicrohttpd's polling threads (of any daemon in the
/// process): one that has accepted a connection or begun a request. Such a thread cannot stop a
/// daemon: MHD_stop_daemon joins the daemon's threads, and a thread joining itself aborts the
/// process ("Failed to join a thread"). Marked by the shim's own callbacks
/// (msse_shim_mark_daemon_thread), which libmicrohttpd calls first on every new connection and
/// every request.
int msse_shim_on_daemon_thread(void);
void msse_shim_mark_daemon_thread(void);

/// The connections the daemon holds open (accepted and not yet cleaned up), or 0 on failure.
unsigned int msse_shim_daemon_connections(struct MHD_Daemon *daemon);

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
