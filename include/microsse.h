/*
 * microsse.h — the C interface to MicroSSE, an embeddable Server-Sent Events server.
 *
 * A C program embeds an SSE endpoint in its own process:
 *
 *     #include <microsse.h>
 *
 *     msse_config cfg;
 *     msse_server *srv = NULL;
 *     msse_config_init(&cfg);
 *     cfg.port = 0;                                  // any free port
 *     if (msse_server_create(&cfg, &srv) != MSSE_OK) return 1;
 *     if (msse_server_start(srv) != MSSE_OK) {
 *         fprintf(stderr, "start: %s\n", msse_server_errmsg(srv));
 *         msse_server_destroy(srv);
 *         return 1;
 *     }
 *     printf("GET http://127.0.0.1:%u/events/news\n", (unsigned)msse_server_port(srv));
 *     msse_publish(srv, "news", NULL, NULL, "hello", 5);   // from any thread
 *     ...
 *     msse_server_stop(srv);                         // streams end cleanly
 *     msse_server_destroy(srv);
 *
 * Link with `-lmicrosse` (see `pkg-config --cflags --libs microsse`).
 *
 * Conventions (the same for every function below):
 *
 * - Every fallible function returns MSSE_OK (0) or a negative MSSE_E* code; msse_strerror()
 *   names the code and msse_server_errmsg() gives a one-line reason for the last failure.
 *   No call aborts the process on a bad argument: NULL or out-of-range arguments return
 *   MSSE_EINVAL.
 * - Strings are UTF-8 and NUL-terminated unless a length is given. Every string and buffer
 *   passed in is copied before the call returns; the caller keeps ownership of its memory.
 * - Strings returned by the library are owned by it; how long each stays valid is stated.
 * - Threads: msse_server_* functions that change the server (create, start, destroy) must not
 *   run concurrently on the same server; start never from inside a callback (stop and destroy
 *   may be called from one: they then finish on a thread of their own). Everything
 *   else (publishing, sending to clients, adding routes and callbacks, reading the port and
 *   statistics) may be called from any thread at any time, concurrently.
 * - Callbacks (authorizer, routes, stream routes, connect, disconnect) run on libmicrohttpd's
 *   polling thread, one at a time per polling thread (config.thread_pool_size > 1 gives several
 *   polling threads, so callbacks can then run concurrently). They must return quickly and must
 *   not block: a slow callback delays every client. They may call msse_publish and the
 *   msse_client_* functions, and msse_server_stop or msse_server_destroy (e.g. a `/shutdown`
 *   route), which then return at once and finish on a thread of their own.
 *   A disconnect callback can also run on the thread calling msse_server_stop().
 * - Every registration that stores a `void *user_data` takes an optional `free_fn`; it is called
 *   exactly once with that user_data, from msse_server_destroy() after the server has stopped
 *   (no callback can run any more by then), also for registrations that were replaced.
 */
#ifndef MICROSSE_H
#define MICROSSE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define MSSE_API __attribute__((visibility("default")))
#else
#define MSSE_API
#endif

/* ---------------------------------------------------------------------------------------------
 * Version
 */

/** The version of this header: major, minor and patch, a string and a number. */
#define MSSE_VERSION_MAJOR 0
#define MSSE_VERSION_MINOR 1
#define MSSE_VERSION_PATCH 0
#define MSSE_VERSION "0.1.0"
/** MAJOR * 1000000 + MINOR * 1000 + PATCH, for `#if MSSE_VERSION_NUMBER >= ...`. */
#define MSSE_VERSION_NUMBER 1000

/**
 * The version of the library linked at run time, e.g. "0.1.0" (compare with MSSE_VERSION).
 * Returns a static string, never NULL. Any thread.
 */
MSSE_API const char *msse_version(void);

/** The library's MSSE_VERSION_NUMBER at run time. Any thread. */
MSSE_API int msse_version_number(void);

/* ---------------------------------------------------------------------------------------------
 * Result codes
 */

#define MSSE_OK 0           /**< Success. */
#define MSSE_EINVAL (-1)    /**< A NULL or out-of-range argument, or a bad config field. */
#define MSSE_ECHANNEL (-2)  /**< Channel name not 1-128 characters of A-Z a-z 0-9 . _ ~ - */
#define MSSE_EID (-3)       /**< Event id containing CR, LF or NUL. */
#define MSSE_EEVENT (-4)    /**< Event name containing CR or LF. */
#define MSSE_EUTF8 (-5)     /**< Data or a string argument that is not valid UTF-8. */
#define MSSE_ETOOBIG (-6)   /**< Data longer than config.max_publish_bytes. */
#define MSSE_ESTATE (-7)    /**< Not possible now (e.g. starting a server twice, or after stop). */
#define MSSE_ESTART (-8)    /**< The server could not start (address in use, bad host, TLS). */
#define MSSE_ENOTFOUND (-9) /**< The thing named does not exist. */
#define MSSE_EUNAVAIL (-10) /**< Unavailable: the server is stopping or stopped, or its Redis cannot be reached. Nothing was published. */
#define MSSE_ECLOSED (-11)  /**< The client's stream is closed or ending: nothing was sent. */
#define MSSE_ESPACE (-12)   /**< An output buffer is too small for the result. */
#define MSSE_EINTERNAL (-13) /**< An unexpected failure inside the library (a bug: report it). */

/**
 * A short English description of a result code, e.g. "invalid channel name".
 * Returns a static string, never NULL (unknown codes give "unknown error"). Any thread.
 */
MSSE_API const char *msse_strerror(int code);

/* ---------------------------------------------------------------------------------------------
 * Configuration
 */

/**
 * Server settings. Always fill one with msse_config_init() first, then change fields: the
 * leading `size` field tells the library which layout the caller was compiled with, so later
 * releases can add fields at the end without breaking programs built against this header.
 * String fields are copied by msse_server_create(); the struct can be freed right after.
 */
typedef struct msse_config {
    size_t size;                    /**< sizeof(msse_config); set by msse_config_init. */
    const char *host;               /**< Numeric IPv4/IPv6 address to bind. "127.0.0.1". */
    uint16_t port;                  /**< Port to bind; 0 picks a free one. 8080. */
    int heartbeat_seconds;          /**< Comment line on idle streams; 0 = off. 15. */
    int retry_ms;                   /**< `retry:` sent at each stream start; -1 = none. -1. */
    int history_count;              /**< Events kept per channel for resume. 1000. */
    size_t history_bytes;           /**< Encoded bytes kept per channel. 8 MiB. */
    int max_clients;                /**< Streams at once; more get 503. 10000. */
    size_t client_buffer_bytes;     /**< Pending bytes per subscriber before it is dropped. 8 MiB. */
    size_t max_publish_bytes;       /**< Largest event data (C publish and HTTP POST). 2 MiB. */
    int publishing;                 /**< Non-zero: POST /events/{channel} publishes. 0. */
    const char *publish_token;      /**< When set, POST needs `Authorization: Bearer TOKEN`. NULL. */
    const char *const *cors_origins; /**< Origins allowed cross-origin ("*" = any). NULL. */
    size_t cors_origin_count;       /**< Number of entries in cors_origins. 0. */
    int channel_routes;             /**< Non-zero: serve GET /events/{channel} and /events?channel=. 1. */
    int status_routes;              /**< Non-zero: serve GET /healthz, GET /stats and GET /metrics. 1. */
    int write_timeout_seconds;      /**< A stream stalled this long is dropped as dead. 30. */
    int connection_timeout_seconds; /**< Idle non-stream connections are closed after. 30. */
    int connection_limit;           /**< TCP connections at once (streams + requests). 10240. */
    int per_ip_connection_limit;    /**< Connections per peer address; over it a request gets 429
                                         (past twice it: closed at accept); 0 = no limit. 0. */
    size_t connection_memory_limit; /**< libmicrohttpd memory pool per connection (request headers up to 16 KB fit). 32 KiB. */
    int thread_pool_size;           /**< Polling threads (>= 1). 1. */
    const char *tls_cert_pem;       /**< PEM certificate chain (text, not a path) for HTTPS. NULL. */
    const char *tls_key_pem;        /**< PEM private key (text); set both or neither. NULL. */
    int shutdown_drain_ms;          /**< msse_server_stop waits this long for streams to flush. 3000. */
    /* Added in 0.1 after the first layout: a caller whose cfg.size ends above gets the default. */
    const char *redis_url;          /**< "redis://[:PASSWORD@]HOST[:PORT][/DB][?OPTIONS]" or
                                         "redis-sentinel://H:P[,H:P...]/MASTER[?OPTIONS]", OPTIONS
                                         wait=auto|N|all, waitTimeout=MS, workers=N, queue=N (README,
                                         "Several hubs"): share channels, ids and
                                         history with other hubs through Redis Streams; NULL keeps them
                                         in this process. Several URLs separated by spaces are
                                         shards (at most 16, each deployment once, the same order
                                         on every hub: docs/REDIS.md, "Shards"). NULL. */
    /* Added for token authorization (JWT), after redis_url; an older cfg.size gets NULL/0 here.
       Set jwt_secret or jwt_public_key_pem (not both) to require a token to subscribe: the
       token comes from `Authorization: Bearer`, the cookie `microsseAuthorization` or the query
       parameter `authorization`; its claim {"microsse": {"subscribe": [...], "publish": [...]}}
       lists the channel patterns it grants (`name`, `prefix*`, `*`). Without a token: 401; a
       channel not granted: 403; a stream whose token expires gets a final `microsse.expired`
       event and ends. A token whose `publish` list grants the channel may publish, as does
       publish_token when set. Strings are copied by msse_server_create. */
    const char *jwt_secret;         /**< HS256 secret, at least 32 bytes of text. NULL. */
    const char *jwt_public_key_pem; /**< PEM `PUBLIC KEY` text (not a path): RSA >= 2048 bits for
                                         RS256, or P-256 for ES256. NULL. */
    const char *const *public_channels; /**< Channel patterns anyone may subscribe to without a
                                             token; needs a JWT key. NULL. */
    size_t public_channel_count;    /**< Number of entries in public_channels. 0. */
    /* Added for the limits, after public_channel_count; an older cfg.size gets the defaults. */
    size_t history_memory_bytes;    /**< History bytes of all channels together, as the heap
                                         holds them (bookkeeping included; docs/LIMITS.md); over
                                         it the oldest events of any channel go first. Not used
                                         with Redis. 256 MiB. */
    int history_ttl_seconds;        /**< Events older than this are not replayed (a resume from
                                         one gets the gap signal); 0 = no age limit. 0. */
    int max_channels_per_stream;    /**< Channels one stream may name; more get 400. 32. */
    size_t max_upload_bytes_in_flight; /**< Publish-body bytes being received on all connections
                                            together; an upload over it gets 503. 64 MiB. */
    int drain_window_ms;            /**< msse_server_stop sends each stream a `retry:` drawn from
                                         0 to this many ms, so clients reconnect spread out;
                                         0 = none. 5000. */
    const char *const *allowed_hosts; /**< Host names (the Host header without its port, any
                                           case) this server answers for; others get 421 (a DNS
                                           rebinding guard). NULL = any. Copied. */
    size_t allowed_host_count;      /**< Number of entries in allowed_hosts. 0. */
    /* Added for private statistics, after allowed_host_count; an older cfg.size gets NULL. */
    const char *stats_token;        /**< When set, GET /stats and GET /metrics need
                                         `Authorization: Bearer TOKEN` (others get 401); NULL
                                         leaves them public. Copied. NULL. */
    /* Added for Mercure (docs/MERCURE.md), after stats_token; an older cfg.size gets 0/NULL.
       mercure serves the Mercure hub at /.well-known/mercure beside the channel routes; it needs
       jwt_secret or jwt_public_key_pem (publishers present a token) and, for draft-08, at least
       one issuer and the audience. Strings are copied by msse_server_create. */
    int mercure;                    /**< Non-zero: serve /.well-known/mercure. 0. */
    int mercure_legacy;             /**< Non-zero: speak draft-07 where it differs from draft-08
                                         (topic=, the `mercure` claim, mercureAuthorization,
                                         lastEventID). 0. */
    const char *const *mercure_issuers; /**< Trusted issuers (`iss`) of draft-08 tokens, compared
                                             byte for byte. NULL. */
    size_t mercure_issuer_count;    /**< Number of entries in mercure_issuers. 0. */
    const char *mercure_audience;   /**< The hub's resource identifier, which draft-08 tokens name
                                         in `aud` (e.g. "https://hub.example.com/.well-known/mercure");
                                         relative URL patterns are read against it. NULL. */
    int mercure_subscriptions;      /**< Non-zero: active subscriptions (subscription events and
                                         the subscriptions API, across a Redis cluster). 0. */
} msse_config;

/**
 * Fills `cfg` with the defaults listed above and sets cfg->size. `cfg` NULL: does nothing.
 * Any thread.
 */
MSSE_API void msse_config_init(msse_config *cfg);

/* ---------------------------------------------------------------------------------------------
 * Server lifecycle
 */

/** A server. Opaque; created by msse_server_create, freed by msse_server_destroy. */
typedef struct msse_server msse_server;

/**
 * Creates a server from `cfg` (copied; nothing is bound yet) and stores it in `*out`.
 *
 * Returns MSSE_OK; MSSE_EINVAL when `cfg` or `out` is NULL, cfg->size is too small (not set by
 * msse_config_init) or larger than this library knows with non-zero unknown fields, or a field
 * is out of range (negative counts or times, retry_ms < -1, thread_pool_size < 1, host NULL,
 * only one of tls_cert_pem and tls_key_pem, redis_url not a redis:// URL); MSSE_EUTF8 when a
 * string field is not UTF-8.
 * The ranges are ServerConfiguration.validate()'s, the same rules as the Swift API and
 * `microsse serve`; msse_server_errmsg says which field is wrong.
 * When `cfg` and `out` are not NULL, `*out` receives a handle even on failure (like sqlite3_open):
 * msse_server_errmsg(*out) tells why it failed, every other call on it returns MSSE_ESTATE, and it
 * must be freed with msse_server_destroy. When `cfg` or `out` is NULL, `*out` (if any) is NULL.
 * Any thread.
 */
MSSE_API int msse_server_create(const msse_config *cfg, msse_server **out);

/**
 * Binds the address and starts serving on libmicrohttpd's polling thread; returns at once.
 *
 * Returns MSSE_OK; MSSE_EINVAL when `srv` is NULL; MSSE_ESTATE when already started or stopped;
 * MSSE_ESTART when the address cannot be bound or TLS cannot be set up; MSSE_EUNAVAIL when
 * cfg.redis_url is set and Redis cannot be reached (see msse_server_errmsg). Not concurrently with other lifecycle calls on `srv`; not from a callback.
 */
MSSE_API int msse_server_start(msse_server *srv);

/**
 * The bound port (useful with port 0), or 0 before start, after stop, or when `srv` is NULL.
 * Any thread.
 */
MSSE_API uint16_t msse_server_port(const msse_server *srv);

/**
 * Stops gracefully: refuses new requests, ends every stream with its final chunk (waiting at
 * most config.shutdown_drain_ms), then releases the port, and returns once stopped. Later
 * publishes return MSSE_EUNAVAIL. Disconnect callbacks for the remaining streams may run on the
 * calling thread.
 *
 * From inside a callback (a route, the authorizer, a connect or disconnect callback: they run on
 * libmicrohttpd's threads, which the stop must wait for) it only begins the stop, on a thread of
 * its own, and returns MSSE_OK at once; the request being answered may be cut short. To wait for
 * the end of that stop, call msse_server_stop (or msse_server_destroy) again from a thread of
 * your own: a call while a stop is under way waits for it to finish.
 *
 * Returns MSSE_OK (also when already stopped, or never started); MSSE_EINVAL when `srv` is NULL.
 * Any thread; not concurrently with msse_server_start or msse_server_destroy on `srv`.
 */
MSSE_API int msse_server_stop(msse_server *srv);

/**
 * Stops the server if needed, calls every registered free_fn once, drops the library's client
 * handles (handles the caller retained stay valid until released) and frees the server.
 * `srv` NULL: does nothing. After this call `srv` must not be used; the caller must make sure no
 * other thread still uses `srv`.
 * From inside a callback it returns at once, and a thread of its own does all of this once the
 * callback has returned (the free_fns then run on that thread, after the server has stopped): a
 * program that exits right after must wait for its free_fns first.
 */
MSSE_API void msse_server_destroy(msse_server *srv);

/**
 * A one-line reason for the most recent call on `srv` made by the calling thread that returned a
 * negative code, e.g. "channel name has an invalid character at offset 3". Successful calls do
 * not change it. Returns "not an error" when that thread has had no failure, and a static
 * message when `srv` is NULL; never NULL. The string is owned by the server and stays valid
 * until the calling thread's next failing call on `srv`, or msse_server_destroy. Any thread.
 */
MSSE_API const char *msse_server_errmsg(const msse_server *srv);

/* ---------------------------------------------------------------------------------------------
 * Publishing
 */

/**
 * Publishes `len` bytes of `data` (UTF-8, may be empty, may contain newlines: each line becomes a
 * `data:` line) to `channel`. `event` is the `event:` field (NULL or "" for the default
 * "message"); `id` is the `id:` field (NULL: the server assigns one from its sequence).
 * Every subscriber of the channel receives it, in publish order; it is kept in the channel's
 * history for resume.
 *
 * Returns MSSE_OK; MSSE_EINVAL when `srv` or `channel` is NULL, or `data` is NULL with `len` > 0;
 * MSSE_ECHANNEL for a bad channel name; MSSE_EEVENT when `event` contains CR or LF or is one of
 * MicroSSE's own types ("microsse.gap", "microsse.expired") or a type EventSource handles itself
 * ("error", "open"; "message" is allowed, it is the default); MSSE_EID
 * when `id` contains CR or LF; MSSE_EUTF8 when `data` (or a string) is not valid UTF-8;
 * MSSE_ETOOBIG when `len` > config.max_publish_bytes; MSSE_EUNAVAIL once the server is stopping.
 * Publishing before msse_server_start is allowed (the event goes to history).
 * Thread-safe: any thread, any time, including from callbacks; events published by one thread
 * reach each subscriber in that thread's order.
 */
MSSE_API int msse_publish(msse_server *srv, const char *channel, const char *event, const char *id,
                          const char *data, size_t len);

/**
 * An event with every field, for msse_publish_event and msse_client_send_event. Fill it with
 * msse_event_init first (it sets `size`, like msse_config).
 */
typedef struct msse_event {
    size_t size;       /**< sizeof(msse_event); set by msse_event_init. */
    const char *event; /**< `event:` field; NULL or "" = "message". NULL. */
    const char *id;    /**< `id:` field; NULL = assign (publish) or none (client send). NULL. */
    const char *data;  /**< Payload, `len` bytes of UTF-8; may be NULL when len is 0. NULL. */
    size_t len;        /**< Bytes of data. 0. */
    int retry_ms;      /**< `retry:` field (client reconnection delay); -1 = none. -1. */
} msse_event;

/** Fills `ev` with the defaults above and sets ev->size. `ev` NULL: does nothing. Any thread. */
MSSE_API void msse_event_init(msse_event *ev);

/**
 * Publishes `ev` to `channel` like msse_publish, with the `retry:` field too, and copies the
 * event's id (the given one or the assigned one) into `id_out` as a NUL-terminated string when
 * `id_out` is not NULL. `id_out_size` is its size in bytes.
 *
 * Returns the codes of msse_publish, plus MSSE_EINVAL when `ev` is NULL, ev->size is too small
 * or ev->retry_ms < -1, and MSSE_ESPACE when the id does not fit `id_out` (the event WAS
 * published; `id_out` then holds an empty string). Thread-safe like msse_publish.
 */
MSSE_API int msse_publish_event(msse_server *srv, const char *channel, const msse_event *ev, char *id_out,
                                size_t id_out_size);

/* ---------------------------------------------------------------------------------------------
 * Requests and responses (only valid inside the callback that received them)
 */

/**
 * An HTTP request as shown to the authorizer and to route callbacks. Opaque. The pointer and
 * every string obtained from it are valid only until the callback returns; copy what you keep.
 * The accessors may only be called from inside that callback.
 */
typedef struct msse_request msse_request;

/** The method, e.g. "GET"; "" when `req` is NULL. */
MSSE_API const char *msse_request_method(const msse_request *req);
/** The percent-decoded path without the query, e.g. "/events/news"; "" when `req` is NULL. */
MSSE_API const char *msse_request_path(const msse_request *req);
/** The first value of header `name` (case-insensitive), or NULL when absent or on NULL arguments. */
MSSE_API const char *msse_request_header(const msse_request *req, const char *name);
/** The first value of query parameter `name` (percent-decoded), or NULL when absent. */
MSSE_API const char *msse_request_query(const msse_request *req, const char *name);
/** The peer's numeric address, e.g. "127.0.0.1"; "" when unknown or `req` is NULL. */
MSSE_API const char *msse_request_remote_address(const msse_request *req);
/**
 * The request body (bounded by config.max_publish_bytes), stores its length in `*len` when `len`
 * is not NULL. Returns NULL (and 0) for an empty body or a NULL `req`.
 */
MSSE_API const void *msse_request_body(const msse_request *req, size_t *len);

/**
 * The response a route callback fills in. Opaque; valid only during that callback. It starts as
 * status 200, no headers, empty body.
 */
typedef struct msse_response msse_response;

/** Sets the status (100-599). Returns MSSE_OK, or MSSE_EINVAL (NULL `res`, status out of range). */
MSSE_API int msse_response_set_status(msse_response *res, int status);
/**
 * Adds a header (copied). Content-Length is added by the server. Returns MSSE_OK; MSSE_EINVAL for
 * NULL arguments, an empty name, or a name or value containing CR, LF or NUL (or `:` in the name);
 * MSSE_EUTF8 for strings that are not UTF-8.
 */
MSSE_API int msse_response_add_header(msse_response *res, const char *name, const char *value);
/**
 * Sets the body to a copy of `len` bytes at `body` (NULL allowed when `len` is 0). Returns MSSE_OK,
 * or MSSE_EINVAL for a NULL `res` or a NULL `body` with `len` > 0.
 */
MSSE_API int msse_response_set_body(msse_response *res, const void *body, size_t len);

/* ---------------------------------------------------------------------------------------------
 * Clients (one connected stream)
 */

/**
 * One connected event stream: a subscriber of channels, or a private stream of a stream route.
 *
 * Lifetime: the library holds a reference to each handle it has given out from when the stream
 * opens until the disconnect callback for it has returned (or msse_server_destroy). A handle
 * received in a callback is therefore valid during that callback and, while the stream is open,
 * until its disconnect callback returns. To use it later (e.g. from a ticker thread) take your
 * own reference with msse_client_retain and drop it with msse_client_release; a retained handle
 * stays valid, even after the stream closed and the server was destroyed (sending then returns
 * MSSE_ECLOSED). The same stream always has the same handle pointer.
 */
typedef struct msse_client msse_client;

/**
 * Sends an event to this client alone: `event` (NULL or "" = "message"), `id` (NULL = no id
 * line) and `len` bytes of UTF-8 `data`, validated like msse_publish. Not kept in any history.
 *
 * Returns MSSE_OK; MSSE_EINVAL (NULL client, or NULL data with len > 0), MSSE_EEVENT, MSSE_EID,
 * MSSE_EUTF8, MSSE_ETOOBIG as msse_publish; MSSE_ECLOSED when the stream is closed or ending, or
 * the event did not fit the client's buffer (the client is then disconnected).
 * Thread-safe: any thread, any time, including from callbacks.
 */
MSSE_API int msse_client_send(msse_client *client, const char *event, const char *id, const char *data,
                              size_t len);

/** msse_client_send with every field of `ev` (including retry_ms); codes as msse_client_send. */
MSSE_API int msse_client_send_event(msse_client *client, const msse_event *ev);

/**
 * Sends a comment (`: text`, split into one comment line per line) to this client alone, e.g.
 * a custom keep-alive. Returns MSSE_OK, MSSE_EINVAL (NULL arguments), MSSE_EUTF8 or MSSE_ECLOSED.
 * Thread-safe.
 */
MSSE_API int msse_client_send_comment(msse_client *client, const char *text);

/**
 * Ends the stream cleanly once what is queued has been written; the disconnect callback follows.
 * Returns MSSE_OK (also when already closed) or MSSE_EINVAL for NULL. Thread-safe.
 */
MSSE_API int msse_client_close(msse_client *client);

/** A process-unique number for this stream (never 0); 0 for NULL. Thread-safe. */
MSSE_API uint64_t msse_client_id(const msse_client *client);

/** 1 while the stream is open, 0 once it is closed or ending (or `client` is NULL). Thread-safe. */
MSSE_API int msse_client_is_open(const msse_client *client);

/**
 * The path the stream was opened on, e.g. "/talk" or "/events/news"; "" for NULL. Valid as long
 * as the handle is. Thread-safe.
 */
MSSE_API const char *msse_client_path(const msse_client *client);

/** Takes a reference to `client` (see msse_client); returns `client`. NULL: returns NULL. */
MSSE_API msse_client *msse_client_retain(msse_client *client);

/** Drops a reference taken with msse_client_retain. NULL: does nothing. Thread-safe. */
MSSE_API void msse_client_release(msse_client *client);

/* ---------------------------------------------------------------------------------------------
 * Callbacks, routes and stream routes
 */

/** Frees a `user_data` given to a registration; see the conventions at the top. */
typedef void (*msse_free_fn)(void *user_data);

/** What a request asks for, as shown to the authorizer. */
#define MSSE_ACCESS_SUBSCRIBE 1 /**< GET /events/...: names = the channels. */
#define MSSE_ACCESS_PUBLISH 2   /**< POST /events/{channel}: names = { channel }. */
#define MSSE_ACCESS_STREAM 3    /**< A stream route: names = { path }. */
#define MSSE_ACCESS_ROUTE 4     /**< A plain route, /stats or /metrics: names = { path }. */

/**
 * Decides whether a request may proceed; runs before any byte of the response is sent.
 * `access` is an MSSE_ACCESS_* value; `names` holds `count` strings (valid during the call).
 * Return 0 to allow, or an HTTP status from 400 to 599 (401 and 403 are typical) to refuse with
 * that status; any other value refuses with 403. msse_request_* may be used on `req`.
 * Runs on libmicrohttpd's polling thread.
 */
typedef int (*msse_authorize_cb)(void *user_data, const msse_request *req, int access, const char *const *names,
                                 size_t count);

/** Called when a stream opens or has closed, with its handle. Runs on libmicrohttpd's polling
 * thread (disconnects also on the thread calling msse_server_stop). */
typedef void (*msse_client_cb)(void *user_data, msse_client *client);

/** Fills `res` for a plain route. Runs on libmicrohttpd's polling thread. */
typedef void (*msse_route_cb)(void *user_data, const msse_request *req, msse_response *res);

/**
 * Called when a client opens a stream route, before the stream's headers are sent; events sent
 * to `client` here are the first the client receives. The connect callbacks run after it.
 * Runs on libmicrohttpd's polling thread.
 */
typedef void (*msse_stream_cb)(void *user_data, const msse_request *req, msse_client *client);

/**
 * Sets the authorizer (replacing any earlier one; `cb` NULL removes it: everything is allowed).
 * Not consulted for /healthz and CORS preflights. The publish token (config.publish_token) is
 * checked before it. Returns MSSE_OK or MSSE_EINVAL (NULL `srv`). Any thread, before or after
 * start. `free_fn` (may be NULL) is called with `user_data` by msse_server_destroy.
 */
MSSE_API int msse_server_set_authorizer(msse_server *srv, msse_authorize_cb cb, void *user_data,
                                        msse_free_fn free_fn);

/**
 * Adds a callback run when any stream opens (channel subscribers and stream routes). Several
 * may be added; they run in the order added. Returns MSSE_OK or MSSE_EINVAL (NULL `srv` or `cb`).
 * Any thread, before or after start. `free_fn` (may be NULL) is called by msse_server_destroy.
 */
MSSE_API int msse_server_on_connect(msse_server *srv, msse_client_cb cb, void *user_data, msse_free_fn free_fn);

/**
 * Adds a callback run once when a stream has closed, for any reason (client gone, dropped for
 * falling behind, msse_client_close, server stop). The handle is valid until it returns. Codes
 * and threads as msse_server_on_connect.
 */
MSSE_API int msse_server_on_disconnect(msse_server *srv, msse_client_cb cb, void *user_data,
                                       msse_free_fn free_fn);

/**
 * Serves `cb`'s response for requests with this exact method and path (e.g. "GET", "/"),
 * replacing an earlier route for the same pair; checked before the built-in routes. The
 * authorizer sees it as MSSE_ACCESS_ROUTE. Returns MSSE_OK; MSSE_EINVAL for NULL arguments or a
 * path not starting with '/'; MSSE_EUTF8. Any thread, before or after start.
 * `free_fn` (may be NULL) is called by msse_server_destroy.
 */
MSSE_API int msse_server_add_route(msse_server *srv, const char *method, const char *path, msse_route_cb cb,
                                   void *user_data, msse_free_fn free_fn);

/**
 * Serves a fixed response (e.g. an HTML page) for `method` `path`: `status`, a Content-Type
 * (NULL: none) and `len` bytes of `body`, all copied. Returns MSSE_OK; MSSE_EINVAL for NULL
 * arguments, a status outside 100-599, or a bad path or content type; MSSE_EUTF8. Any thread.
 */
MSSE_API int msse_server_add_static_route(msse_server *srv, const char *method, const char *path, int status,
                                          const char *content_type, const void *body, size_t len);

/**
 * Serves a private `text/event-stream` at `GET path`: `cb` gets a handle for the new client to
 * send events to that connection alone (msse_client_send), for as long as it stays open.
 * Replaces an earlier stream route for the same path. The authorizer sees it as
 * MSSE_ACCESS_STREAM; connect and disconnect callbacks run for it too. Returns MSSE_OK;
 * MSSE_EINVAL for NULL arguments or a path not starting with '/'; MSSE_EUTF8. Any thread.
 * `free_fn` (may be NULL) is called by msse_server_destroy.
 */
MSSE_API int msse_server_add_stream_route(msse_server *srv, const char *path, msse_stream_cb cb, void *user_data,
                                          msse_free_fn free_fn);

/* ---------------------------------------------------------------------------------------------
 * Statistics
 */

/** Counters since the server started (the same as GET /stats). */
typedef struct msse_stats {
    size_t size;          /**< sizeof(msse_stats); set by the caller before msse_server_stats. */
    uint64_t clients;     /**< Streams open now. */
    uint64_t channels;    /**< Channels with history or subscribers. */
    uint64_t published;   /**< Events published to channels. */
    uint64_t delivered;   /**< Events written to sockets (one per subscriber per event). */
    uint64_t bytes;       /**< Stream bytes written to sockets. */
    uint64_t drops;       /**< Streams dropped for falling behind. */
    uint64_t disconnects; /**< Streams ended, for any reason. */
} msse_stats;

/**
 * Fills `stats` (set stats->size = sizeof(msse_stats) first; only that many bytes are written).
 * Returns MSSE_OK, or MSSE_EINVAL for NULL arguments or a size smaller than the first field set.
 * Any thread.
 */
MSSE_API int msse_server_stats(const msse_server *srv, msse_stats *stats);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MICROSSE_H */
