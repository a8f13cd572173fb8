/*
 * c-hub — the reference SSE hub written directly on libmicrohttpd 0.9.75.
 *
 * What "libmicrohttpd with nothing on top" can do, for the MicroSSE benchmarks. Same routes as
 * `microsse serve` (without history, resume, auth or CORS, which the benchmarks do not use):
 *
 *   GET  /events/{channel}   text/event-stream, chunked on HTTP/1.1, close-delimited on 1.0
 *   POST /events/{channel}   body = data of one event → 202 {"id":"N"}
 *   GET  /healthz            200 ok
 *
 * Design (see docs/DESIGN.md in the repository):
 * - one MHD daemon, epoll, internal polling thread (optionally a thread pool), suspend/resume;
 * - each published event is encoded once (`id: N`, `data: ` per line, blank line) into one
 *   refcounted buffer shared by every subscriber's queue;
 * - per subscriber: a lock, a ring of event references, a `suspended` flag. The content reader
 *   copies every queued byte that fits in `max` (batching), and suspends under the lock when
 *   nothing is queued; the publisher enqueues under the lock and resumes only if the flag is set;
 * - a subscriber whose queue exceeds --queue-limit bytes is disconnected;
 * - SIGINT/SIGTERM: stop flag → quiesce → resume every suspended stream → readers end the streams
 *   (final zero-length chunk) → wait (bounded) → MHD_stop_daemon.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------ */
/* options                                                                                     */

static struct {
    const char *host;
    int port;
    unsigned pool;        /* MHD_OPTION_CONNECTION_MEMORY_LIMIT; 0 = not passed: libmicrohttpd's default */
    unsigned block;       /* content-reader block size (MHD_create_response_from_callback) */
    unsigned threads;     /* MHD thread pool size (1 = the internal polling thread only) */
    unsigned max_clients; /* streams; more get 503 */
    size_t queue_limit;   /* bytes queued per subscriber before it is dropped */
    size_t body_limit;    /* publish body limit */
    int verbose;
} opt = {"127.0.0.1", 8080, 0, 1024, 1, 19000, 8u << 20, 2u << 20, 0};

/* Defaults are what someone writing C on libmicrohttpd would use, not tuned to any other server:
 * - pool 0: MHD_OPTION_CONNECTION_MEMORY_LIMIT is not passed, so libmicrohttpd uses its own
 *   default (MHD_POOL_SIZE_DEFAULT, 32 KiB per connection in 0.9.75);
 * - block 1024: the block size commonly passed to MHD_create_response_from_callback (e.g.
 *   libhttpserver's deferred responses); on a chunked stream the reader's `max` comes from the
 *   connection's pool, the block is libmicrohttpd's buffer for close-delimited (HTTP/1.0) bodies;
 * - one epoll thread; no per-IP limit and no connection timeout (SSE streams are long-lived). */

/* ------------------------------------------------------------------------------------------ */
/* events, subscribers, channels                                                               */

typedef struct event {
    atomic_uint refs;
    uint32_t len;
    char data[];
} event_t;

static void event_release(event_t *e) {
    if (atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1) free(e);
}

struct channel;

typedef struct sub {
    pthread_mutex_t lock;
    struct MHD_Connection *conn;
    struct channel *ch;
    struct sub *prev, *next; /* channel list, guarded by the channel lock */
    bool suspended;          /* guarded by lock */
    bool overflow;           /* guarded by lock */
    event_t **q;             /* ring of references, guarded by lock */
    uint32_t qcap, qhead, qcount;
    uint32_t off;            /* bytes of q[qhead] already handed to MHD */
    size_t pending;          /* bytes queued and not yet handed to MHD */
} sub_t;

typedef struct channel {
    pthread_mutex_t lock;
    sub_t *subs;
    size_t nsubs;
    struct channel *hnext;
    char name[];
} channel_t;

#define NBUCKETS 1024
static channel_t *buckets[NBUCKETS];
static pthread_mutex_t channels_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_uint_fast64_t next_id = 1;
static atomic_int streams = 0;
static atomic_bool stopping = false;
static atomic_uint_fast64_t stat_published, stat_dropped;
static struct MHD_Daemon *daemon_ = NULL;

static void logf_(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("c-hub: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static uint32_t hash_name(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static bool valid_channel(const char *s) {
    size_t n = strlen(s);
    if (n < 1 || n > 128) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '~' || c == '-'))
            return false;
    }
    return true;
}

/* Channels live until exit (a reference hub does not need to reclaim them). */
static channel_t *channel_get(const char *name, bool create) {
    size_t n = strlen(name);
    uint32_t b = hash_name(name, n) % NBUCKETS;
    pthread_mutex_lock(&channels_lock);
    channel_t *c = buckets[b];
    while (c && strcmp(c->name, name)) c = c->hnext;
    if (!c && create) {
        c = calloc(1, sizeof *c + n + 1);
        if (c) {
            pthread_mutex_init(&c->lock, NULL);
            memcpy(c->name, name, n + 1);
            c->hnext = buckets[b];
            buckets[b] = c;
        }
    }
    pthread_mutex_unlock(&channels_lock);
    return c;
}

/* Encode once: "id: N\n" + "data: LINE\n" per line (CRLF, LF, CR) + "\n". */
static event_t *event_encode(uint64_t id, const char *data, size_t len) {
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '\n' || data[i] == '\r') {
            lines++;
            if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n') i++;
        }
    }
    size_t cap = 32 + len + lines * 7 + 1;
    event_t *e = malloc(sizeof *e + cap);
    if (!e) return NULL;
    char *p = e->data;
    p += sprintf(p, "id: %llu\n", (unsigned long long)id);
    memcpy(p, "data: ", 6);
    p += 6;
    for (size_t i = 0; i < len; i++) {
        char ch = data[i];
        if (ch == '\n' || ch == '\r') {
            if (ch == '\r' && i + 1 < len && data[i + 1] == '\n') i++;
            memcpy(p, "\ndata: ", 7);
            p += 7;
        } else {
            *p++ = ch;
        }
    }
    *p++ = '\n';
    *p++ = '\n';
    e->len = (uint32_t)(p - e->data);
    atomic_init(&e->refs, 1);
    return e;
}

static bool valid_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        /* fast path: 8 ASCII bytes at a time */
        if (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (!(w & 0x8080808080808080ull)) { i += 8; continue; }
        }
        unsigned char c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t k;
        uint32_t cp;
        if ((c & 0xE0) == 0xC0) { k = 1; cp = c & 0x1F; if (c < 0xC2) return false; }
        else if ((c & 0xF0) == 0xE0) { k = 2; cp = c & 0x0F; }
        else if ((c & 0xF8) == 0xF0 && c <= 0xF4) { k = 3; cp = c & 0x07; }
        else return false;
        if (i + k >= n) return false; /* truncated sequence */
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if ((k == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return false;
        i += k + 1;
    }
    return true;
}

/* Caller holds s->lock. */
static bool sub_push(sub_t *s, event_t *e) {
    if (s->qcount == s->qcap) {
        uint32_t ncap = s->qcap ? s->qcap * 2 : 16;
        event_t **nq = malloc(ncap * sizeof *nq);
        if (!nq) return false;
        for (uint32_t i = 0; i < s->qcount; i++) nq[i] = s->q[(s->qhead + i) % s->qcap];
        free(s->q);
        s->q = nq;
        s->qcap = ncap;
        s->qhead = 0;
    }
    s->q[(s->qhead + s->qcount) % s->qcap] = e;
    s->qcount++;
    s->pending += e->len;
    atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
    return true;
}

static uint64_t publish(channel_t *c, const char *data, size_t len) {
    pthread_mutex_lock(&c->lock);
    /* the id is taken under the channel lock so that publish order on a channel is id order */
    uint64_t id = atomic_fetch_add(&next_id, 1);
    event_t *e = event_encode(id, data, len);
    if (!e) { pthread_mutex_unlock(&c->lock); return 0; }
    for (sub_t *s = c->subs; s; s = s->next) {
        pthread_mutex_lock(&s->lock);
        if (!s->overflow) {
            if (s->pending + e->len > opt.queue_limit || !sub_push(s, e)) {
                s->overflow = true; /* the reader ends this stream */
                atomic_fetch_add(&stat_dropped, 1);
            }
            if (s->suspended) {
                s->suspended = false;
                MHD_resume_connection(s->conn);
            }
        }
        pthread_mutex_unlock(&s->lock);
    }
    pthread_mutex_unlock(&c->lock);
    event_release(e);
    atomic_fetch_add(&stat_published, 1);
    return id;
}

/* ------------------------------------------------------------------------------------------ */
/* MHD callbacks                                                                               */

#define RELEASE_BATCH 64

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    sub_t *s = cls;
    event_t *done[RELEASE_BATCH];
    unsigned ndone = 0;
    size_t n = 0;
    pthread_mutex_lock(&s->lock);
    if (s->overflow) {
        pthread_mutex_unlock(&s->lock);
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    while (s->qcount && n < max && ndone < RELEASE_BATCH) {
        event_t *e = s->q[s->qhead];
        size_t k = e->len - s->off;
        if (k > max - n) k = max - n;
        memcpy(buf + n, e->data + s->off, k);
        n += k;
        s->off += (uint32_t)k;
        if (s->off == e->len) {
            done[ndone++] = e;
            s->off = 0;
            s->qhead = (s->qhead + 1) % s->qcap;
            s->qcount--;
        }
    }
    s->pending -= n;
    if (n == 0) {
        if (atomic_load(&stopping)) {
            pthread_mutex_unlock(&s->lock);
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        s->suspended = true;
        MHD_suspend_connection(s->conn);
    }
    pthread_mutex_unlock(&s->lock);
    for (unsigned i = 0; i < ndone; i++) event_release(done[i]);
    return (ssize_t)n;
}

/* The one release site of a subscriber: MHD destroys the response when the connection is done. */
static void stream_free(void *cls) {
    sub_t *s = cls;
    channel_t *c = s->ch;
    pthread_mutex_lock(&c->lock);
    if (s->prev) s->prev->next = s->next;
    else c->subs = s->next;
    if (s->next) s->next->prev = s->prev;
    c->nsubs--;
    pthread_mutex_unlock(&c->lock);
    for (uint32_t i = 0; i < s->qcount; i++) event_release(s->q[(s->qhead + i) % s->qcap]);
    free(s->q);
    pthread_mutex_destroy(&s->lock);
    free(s);
    atomic_fetch_sub(&streams, 1);
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned status, const char *ctype, const char *body,
                             const char *hname, const char *hval) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (hname) MHD_add_response_header(r, hname, hval);
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result start_stream(struct MHD_Connection *conn, const char *name) {
    if (atomic_load(&stopping)) return reply(conn, 503, "text/plain", "shutting down\n", "Retry-After", "1");
    if ((unsigned)atomic_fetch_add(&streams, 1) >= opt.max_clients) {
        atomic_fetch_sub(&streams, 1);
        return reply(conn, 503, "text/plain", "too many clients\n", "Retry-After", "5");
    }
    channel_t *c = channel_get(name, true);
    sub_t *s = c ? calloc(1, sizeof *s) : NULL;
    if (!s) { atomic_fetch_sub(&streams, 1); return MHD_NO; }
    pthread_mutex_init(&s->lock, NULL);
    s->conn = conn;
    s->ch = c;
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, opt.block, stream_reader, s, stream_free);
    if (!r) { pthread_mutex_destroy(&s->lock); free(s); atomic_fetch_sub(&streams, 1); return MHD_NO; }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(r, "X-Accel-Buffering", "no");
    /* visible to publishers from here on */
    pthread_mutex_lock(&c->lock);
    s->next = c->subs;
    if (c->subs) c->subs->prev = s;
    c->subs = s;
    c->nsubs++;
    pthread_mutex_unlock(&c->lock);
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_OK, r);
    MHD_destroy_response(r); /* stream_free runs when MHD drops its reference */
    return ret;
}

typedef struct post_ctx {
    char *buf;
    size_t len, cap;
    bool too_big;
} post_ctx;

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **req_cls) {
    (void)cls;
    (void)version;
    bool is_get = !strcmp(method, "GET"), is_post = !strcmp(method, "POST");
    if (!strcmp(url, "/healthz")) {
        if (!is_get && strcmp(method, "HEAD")) return reply(conn, 405, "text/plain", "method not allowed\n", "Allow", "GET, HEAD");
        return reply(conn, 200, "text/plain", "ok\n", NULL, NULL);
    }
    if (strncmp(url, "/events/", 8)) return reply(conn, 404, "text/plain", "not found\n", NULL, NULL);
    const char *name = url + 8;
    if (!is_get && !is_post) return reply(conn, 405, "text/plain", "method not allowed\n", "Allow", "GET, POST");
    if (!valid_channel(name)) return reply(conn, 400, "text/plain", "bad channel name\n", NULL, NULL);
    if (is_get) return start_stream(conn, name);

    post_ctx *pc = *req_cls;
    if (!pc) {
        pc = calloc(1, sizeof *pc);
        if (!pc) return MHD_NO;
        *req_cls = pc;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        if (!pc->too_big) {
            if (pc->len + n > opt.body_limit) {
                pc->too_big = true;
            } else {
                if (pc->len + n > pc->cap) {
                    size_t ncap = pc->cap ? pc->cap : 256;
                    while (ncap < pc->len + n) ncap *= 2;
                    char *nb = realloc(pc->buf, ncap);
                    if (!nb) return MHD_NO;
                    pc->buf = nb;
                    pc->cap = ncap;
                }
                memcpy(pc->buf + pc->len, upload_data, n);
                pc->len += n;
            }
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (pc->too_big) return reply(conn, 413, "text/plain", "body over the limit\n", NULL, NULL);
    if (!valid_utf8((const unsigned char *)pc->buf, pc->len)) return reply(conn, 400, "text/plain", "invalid UTF-8\n", NULL, NULL);
    channel_t *c = channel_get(name, true);
    uint64_t id = c ? publish(c, pc->buf ? pc->buf : "", pc->len) : 0;
    if (!id) return reply(conn, 500, "text/plain", "out of memory\n", NULL, NULL);
    char json[48];
    snprintf(json, sizeof json, "{\"id\":\"%llu\"}", (unsigned long long)id);
    return reply(conn, 202, "application/json", json, NULL, NULL);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)conn;
    (void)toe;
    post_ctx *pc = *req_cls;
    if (pc) {
        free(pc->buf);
        free(pc);
        *req_cls = NULL;
    }
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    if (!opt.verbose) return;
    fputs("c-hub: mhd: ", stderr);
    vfprintf(stderr, fmt, ap);
}

/* ------------------------------------------------------------------------------------------ */

static void resume_all(void) {
    pthread_mutex_lock(&channels_lock);
    for (unsigned b = 0; b < NBUCKETS; b++) {
        for (channel_t *c = buckets[b]; c; c = c->hnext) {
            pthread_mutex_lock(&c->lock);
            for (sub_t *s = c->subs; s; s = s->next) {
                pthread_mutex_lock(&s->lock);
                if (s->suspended) {
                    s->suspended = false;
                    MHD_resume_connection(s->conn);
                }
                pthread_mutex_unlock(&s->lock);
            }
            pthread_mutex_unlock(&c->lock);
        }
    }
    pthread_mutex_unlock(&channels_lock);
}

static void usage(void) {
    fprintf(stderr,
            "usage: c-hub [--host 127.0.0.1] [--port 8080] [--pool BYTES] [--block BYTES] [--threads N]\n"
            "             [--max-clients N] [--queue-limit BYTES] [--verbose]\n"
            "  --pool BYTES   MHD_OPTION_CONNECTION_MEMORY_LIMIT (default: not set, libmicrohttpd's 32 KiB)\n"
            "  --block BYTES  content-reader block size (default 1024)\n");
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--verbose")) { opt.verbose = 1; continue; }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
        if (!v) { usage(); return 2; }
        i++;
        if (!strcmp(a, "--host")) opt.host = v;
        else if (!strcmp(a, "--port")) opt.port = atoi(v);
        else if (!strcmp(a, "--pool")) opt.pool = (unsigned)atoi(v);
        else if (!strcmp(a, "--block")) opt.block = (unsigned)atoi(v);
        else if (!strcmp(a, "--threads")) opt.threads = (unsigned)atoi(v);
        else if (!strcmp(a, "--max-clients")) opt.max_clients = (unsigned)atoi(v);
        else if (!strcmp(a, "--queue-limit")) opt.queue_limit = (size_t)atoll(v);
        else { usage(); return 2; }
    }
    if (opt.port < 0 || opt.port > 65535 || (opt.pool != 0 && opt.pool < 1024) || opt.block < 64 || opt.threads < 1) { usage(); return 2; }

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    /* every stream is a socket; keep a margin for publishers and the daemon's own descriptors */
    unsigned conn_limit = rl.rlim_cur > 64 ? (unsigned)(rl.rlim_cur - 32) : 16;
    if (opt.max_clients > conn_limit - 16) opt.max_clients = conn_limit - 16;

    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)opt.port);
    if (inet_pton(AF_INET, opt.host, &addr.sin_addr) != 1) { logf_("--host must be an IPv4 address"); return 2; }

    /* the daemon threads inherit this mask: only the main thread takes SIGINT/SIGTERM */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO;
    if (opt.verbose) flags |= MHD_USE_ERROR_LOG;
    daemon_ = MHD_start_daemon(flags, (uint16_t)opt.port, NULL, NULL, on_request, NULL,
                               MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                               MHD_OPTION_CONNECTION_LIMIT, conn_limit,
                               MHD_OPTION_CONNECTION_TIMEOUT, 0u,
                               MHD_OPTION_LISTEN_BACKLOG_SIZE, 4096u,
                               MHD_OPTION_PER_IP_CONNECTION_LIMIT, 0u,
                               MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                               MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                               MHD_OPTION_THREAD_POOL_SIZE, opt.threads > 1 ? opt.threads : 0u,
                               /* last: with --pool 0 the list ends here and MHD keeps its default */
                               opt.pool ? MHD_OPTION_CONNECTION_MEMORY_LIMIT : MHD_OPTION_END, (size_t)opt.pool,
                               MHD_OPTION_END);
    if (!daemon_) { logf_("cannot start the daemon on %s:%d", opt.host, opt.port); return 1; }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_BIND_PORT);
    char pool[32];
    if (opt.pool) snprintf(pool, sizeof pool, "%u", opt.pool);
    else snprintf(pool, sizeof pool, "libmicrohttpd default");
    logf_("listening on http://%s:%u/ (pool %s, block %u, threads %u, max clients %u)", opt.host,
          info ? info->port : (unsigned)opt.port, pool, opt.block, opt.threads, opt.max_clients);

    int sig = 0;
    sigwait(&set, &sig);

    /* shutdown: streams end cleanly, nothing is left suspended when the daemon stops */
    atomic_store(&stopping, true);
    MHD_socket lsock = MHD_quiesce_daemon(daemon_);
    resume_all();
    struct timespec ts = {0, 10 * 1000 * 1000};
    for (int i = 0; i < 300 && atomic_load(&streams) > 0; i++) {
        nanosleep(&ts, NULL);
        if (i % 50 == 49) resume_all();
    }
    int left = atomic_load(&streams);
    MHD_stop_daemon(daemon_);
    if (lsock != MHD_INVALID_SOCKET) close(lsock);
    logf_("stopped (signal %d, %llu events published, %llu subscribers dropped, %d streams cut)", sig,
          (unsigned long long)atomic_load(&stat_published), (unsigned long long)atomic_load(&stat_dropped), left);
    return 0;
}
