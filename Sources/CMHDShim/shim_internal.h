/* Private to the shim: what its three files share (not part of include/mhd_shim.h). */
#ifndef MSSE_SHIM_INTERNAL_H
#define MSSE_SHIM_INTERNAL_H

#include "mhd_shim.h"

#include <stdint.h>
#include <sys/socket.h>

#pragma GCC visibility push(hidden)

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
    /* Pointers first, then the small fields together: one per open connection (72 bytes). */
    struct msse_shim_conn *prev, *next; /* NULL while not linked (no deadline) */
    msse_shim_tracker *tracker;
    uint64_t deadline_ms;
    /* Where the current request target starts, and ends as a C string (set by the URI-log
     * callback, read by the head check, both on the connection's own thread): the end falls short
     * of libmicrohttpd's end of the target when the target holds a raw NUL. */
    const char *target_start, *target_end;
    /* The client's address (IPv4 as ::ffff:a.b.c.d) when counted in the tracker's per-address
     * table, and whether this connection took its address over the limit (then it waits in the
     * tracker's refusal list, with a short deadline, for its 429). */
    unsigned char address[16];
    int fd;
    unsigned char counted, over_limit;
    /* The raw target holds a space, CR, LF or another control byte. */
    unsigned char target_bad;
    /* The current request is HTTP/1.1 (its stream, if any, is sent chunked). Set by the head check. */
    unsigned char http11;
    /* libmicrohttpd's own timeout is off for this TLS connection until its first request arrives
     * (see msse_shim_notify_connection): the tracker's deadline alone bounds the handshake. */
    unsigned char mhd_timeout_off;
} msse_shim_conn;

/* ---- Connections per client address (shim_peers.c), under the tracker's lock ---- */
typedef struct msse_shim_peers msse_shim_peers;
/* A table for at most `connection_limit` open connections: it never fills and never grows. */
msse_shim_peers *msse_shim_peers_create(unsigned int connection_limit);
void msse_shim_peers_destroy(msse_shim_peers *peers);
/* The table key of an IPv4 or IPv6 address; 0 for another family. */
int msse_shim_address_key(const struct sockaddr *address, unsigned char key[16]);
/* Counts one more connection from `key`; returns how many it has now. */
unsigned int msse_shim_peers_add(msse_shim_peers *peers, const unsigned char key[16]);
/* Counts one connection from `key` fewer (the entry goes at zero). */
void msse_shim_peers_remove(msse_shim_peers *peers, const unsigned char key[16]);

/* libmicrohttpd's connection notifications: the deadline tracker's node per connection
 * (shim_deadlines.c). */
void msse_shim_notify_connection(void *cls, struct MHD_Connection *connection, void **socket_context,
                                 enum MHD_ConnectionNotificationCode code);

/* libmicrohttpd's URI-log callback: the raw request target (shim_request.c). */
void *msse_shim_uri_log(void *cls, const char *uri, struct MHD_Connection *connection);

#pragma GCC visibility pop

#endif
