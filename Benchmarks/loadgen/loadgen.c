/*
 * loadgen — SSE load generator for the MicroSSE benchmarks.
 *
 * One thread, one epoll set. It opens N subscribers (`GET /events/{channel}`, HTTP/1.1), de-chunks
 * their bodies, parses the event stream as WHATWG specifies (lines split on CRLF/LF/CR, `data`
 * joined with LF, `id`, `event`, `retry`, comments, blank-line dispatch), and optionally runs a
 * publisher over several keep-alive connections (`POST /events/{channel}`, expects 202).
 *
 * Benchmark payload (the data of every event the publisher sends):
 *
 *     "<g> <c> <s> <t>" then one space and 'x' padding up to --size bytes
 *
 *   g  global publish number (0, 1, 2, ...; the order requests were written)
 *   c  publisher connection index
 *   s  sequence number on that publisher connection (0, 1, 2, ...). A connection has at most one
 *      request in flight, so the server necessarily publishes c's events in s order: every
 *      subscriber must see s = 0, 1, 2, ... for each c. A jump forward is a gap, a step back is an
 *      out-of-order (late or duplicate) delivery.
 *   t  CLOCK_MONOTONIC nanoseconds just before the request was written (same host, same clock).
 *
 * Numeric `id:` values must also increase on each connection (the hub ids are one increasing
 * sequence); a step back is counted as id_regress.
 *
 * The window (--window W) bounds events in flight end to end: event g may only be published once
 * event g-W has reached every live subscriber. --pub-conns bounds HTTP requests in flight.
 *
 * Output: one JSON object on one line on stdout. Exit status 0 if the run completed (whatever the
 * counts say — the caller judges them), 2 on bad arguments, 1 on a setup failure.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_PUB 64
#define LINE_CAP 192   /* stored prefix of a line; longer lines are counted, not stored */
#define HEAD_CAP 128   /* stored prefix of an event's data */
#define ID_CAP 48
#define EVNAME_CAP 32
#define HDR_CAP 8192
#define RBUF_SIZE (256 * 1024)
#define MAX_SUB_PORTS 16

/* ------------------------------------------------------------------------------------------ */
/* time, histogram                                                                             */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Log-linear histogram of nanoseconds: 64 sub-buckets per power of two (<1.6% error). */
#define H_SUB_BITS 6
#define H_SUB (1u << H_SUB_BITS)
#define H_BUCKETS (64 * H_SUB)
typedef struct {
    uint64_t n, max, min, sum;
    uint64_t b[H_BUCKETS];
} hist_t;

static unsigned h_index(uint64_t v) {
    if (v < H_SUB) return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - H_SUB_BITS;
    unsigned sub = (unsigned)(v >> shift) & (H_SUB - 1);
    return (shift + 1) * H_SUB + sub;
}
static uint64_t h_value(unsigned idx) { /* midpoint of the bucket */
    if (idx < H_SUB) return idx;
    unsigned shift = idx / H_SUB - 1;
    uint64_t sub = idx % H_SUB;
    uint64_t lo = ((uint64_t)H_SUB + sub) << shift;
    return lo + ((1ull << shift) >> 1);
}
static void h_add(hist_t *h, uint64_t v) {
    h->n++;
    h->sum += v;
    if (v > h->max) h->max = v;
    if (h->n == 1 || v < h->min) h->min = v;
    h->b[h_index(v)]++;
}
static uint64_t h_pct(const hist_t *h, double p) {
    if (h->n == 0) return 0;
    uint64_t rank = (uint64_t)(p / 100.0 * (double)h->n + 0.5);
    if (rank < 1) rank = 1;
    if (rank > h->n) rank = h->n;
    uint64_t acc = 0;
    for (unsigned i = 0; i < H_BUCKETS; i++) {
        acc += h->b[i];
        if (acc >= rank) {
            uint64_t v = h_value(i);
            if (v > h->max) v = h->max;
            if (v < h->min) v = h->min;
            return v;
        }
    }
    return h->max;
}

/* ------------------------------------------------------------------------------------------ */
/* options                                                                                     */

static struct {
    const char *host;
    int port;
    int pub_port;         /* publisher connections go here (0 = --port): another hub, e.g. over Redis */
    const char *channel;
    const char *sub_path; /* the subscribers' request target; NULL: /events/CHANNEL; {i}: the index */
    const char *mercure_topic; /* publish Mercure updates of this topic (POST /.well-known/mercure, 200) */
    const char *pub_token;     /* publisher's Authorization: Bearer token */
    int pub_channels;          /* > 1: connection c publishes to CHANNEL-(c mod n) */
    int subs;
    int connect_conc;
    double connect_timeout;
    int pub_conns;
    long long events;     /* max events to publish (0 = none) */
    double rate;          /* events/s, 0 = as fast as the window allows */
    int window;           /* events in flight end to end, 0 = unbounded */
    int size;             /* payload bytes */
    double duration;      /* max seconds of publishing */
    double hold;          /* seconds to hold the connections open after connecting (idle) */
    double settle;        /* idle test: seconds between connecting and the measured hold */
    double drain;         /* max seconds to wait for deliveries after publishing */
    double max_time;      /* hard cap on the whole run */
    long long expect;     /* stub mode: events each subscriber must receive */
    int expect_end;       /* stub mode: wait for the server to end every stream */
    int server_pid;
    const char *label;
    int dump;             /* print subscriber 0's events to stderr as JSON lines */
    int sub_ports[MAX_SUB_PORTS]; /* --sub-ports: subscriber i connects to sub_ports[i % n_sub_ports] */
    int n_sub_ports;
    int storm_subs;       /* the last N subscribers reconnect all at once (resume storm) */
    double storm_at;      /* seconds after publishing starts */
} opt = {
    .host = "127.0.0.1", .port = 8080, .channel = "bench", .subs = 100, .connect_conc = 256,
    .connect_timeout = 60, .pub_conns = 4, .events = 0, .rate = 0, .window = 0, .size = 64,
    .duration = 10, .hold = 0, .drain = 10, .max_time = 600, .expect = -1, .expect_end = 0,
    .server_pid = 0, .label = "", .dump = 0,
};

static void usage(void) {
    fprintf(stderr,
        "usage: loadgen [options]\n"
        "  --host H            server address (127.0.0.1)\n"
        "  --port P            server port (8080)\n"
        "  --pub-port P        publish to this port instead (another hub sharing channels)\n"
        "  --sub-ports P,P,..  spread the subscribers over these ports (subscriber i → port i mod n;\n"
        "                      several hubs sharing channels); default: --port\n"
        "  --channel NAME      channel (bench)\n"
        "  --pub-channels N    publisher connection c posts to CHANNEL-(c mod N) (one channel per\n"
        "                      connection keeps each connection's order; subscribe with --sub-path)\n"
        "  --sub-path PATH     subscribers' request target (default /events/CHANNEL), e.g.\n"
        "                      '/events?channel=bench&channel=other' for streams of several channels;\n"
        "                      every {i} is replaced by the subscriber's index (0, 1, ...)\n"
        "  --mercure-topic T   publish Mercure updates of topic T instead (POST /.well-known/mercure,\n"
        "                      form topic=T&data=PAYLOAD, expects 200)\n"
        "  --pub-token TOKEN   the publisher sends Authorization: Bearer TOKEN\n"
        "  --subs N            subscribers (100)\n"
        "  --connect-conc N    connections being set up at once (256)\n"
        "  --connect-timeout S give up establishing after S seconds (60)\n"
        "  --pub-conns N       publisher keep-alive connections = requests in flight (4)\n"
        "  --events N          events to publish (0 = no publisher)\n"
        "  --rate R            events per second (0 = as fast as possible)\n"
        "  --window W          events in flight end to end (0 = unbounded)\n"
        "  --size B            payload bytes (64)\n"
        "  --duration S        stop publishing after S seconds (10)\n"
        "  --hold S            after connecting, hold the streams S seconds (idle test; with a\n"
        "                      publisher: settle S seconds before publishing starts)\n"
        "  --settle S          idle test: wait S seconds after connecting before the measured\n"
        "                      hold starts (its CPU, RSS and comments are those of the hold)\n"
        "  --drain S           wait at most S seconds for deliveries after publishing (10)\n"
        "  --max-time S        hard cap for the whole run (600)\n"
        "  --expect N          no publisher: each subscriber must receive N benchmark events\n"
        "  --expect-end        no publisher: wait until the server ends every stream\n"
        "  --server-pid PID    sample server CPU (/proc/PID/stat) and memory (/proc/PID/status)\n"
        "  --label TEXT        copied into the JSON output\n"
        "  --dump              print subscriber 0's events to stderr as JSON lines\n"
        "  --storm-subs N      resume storm: the last N of --subs close and reconnect all at once with\n"
        "                      Last-Event-ID (their last id) --storm-at S seconds into publishing;\n"
        "                      the others are the steady set, their latency split before/during/after\n"
        "  --storm-at S        when the storm starts, seconds after publishing starts (2)\n");
}

static double arg_num(const char *name, const char *v) {
    char *end;
    double d = strtod(v, &end);
    if (*v == 0 || *end != 0 || d < 0) {
        fprintf(stderr, "loadgen: bad value for %s: %s\n", name, v);
        exit(2);
    }
    return d;
}

static void parse_args(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = (i + 1 < argc) ? argv[i + 1] : NULL;
#define NEEDV() do { if (!v) { fprintf(stderr, "loadgen: %s needs a value\n", a); exit(2); } i++; } while (0)
        if (!strcmp(a, "--host")) { NEEDV(); opt.host = v; }
        else if (!strcmp(a, "--port")) { NEEDV(); opt.port = (int)arg_num(a, v); }
        else if (!strcmp(a, "--pub-port")) { NEEDV(); opt.pub_port = (int)arg_num(a, v); }
        else if (!strcmp(a, "--channel")) { NEEDV(); opt.channel = v; }
        else if (!strcmp(a, "--pub-channels")) { NEEDV(); opt.pub_channels = (int)arg_num(a, v); }
        else if (!strcmp(a, "--sub-path")) { NEEDV(); opt.sub_path = v; }
        else if (!strcmp(a, "--mercure-topic")) { NEEDV(); opt.mercure_topic = v; }
        else if (!strcmp(a, "--pub-token")) { NEEDV(); opt.pub_token = v; }
        else if (!strcmp(a, "--subs")) { NEEDV(); opt.subs = (int)arg_num(a, v); }
        else if (!strcmp(a, "--connect-conc")) { NEEDV(); opt.connect_conc = (int)arg_num(a, v); }
        else if (!strcmp(a, "--connect-timeout")) { NEEDV(); opt.connect_timeout = arg_num(a, v); }
        else if (!strcmp(a, "--pub-conns")) { NEEDV(); opt.pub_conns = (int)arg_num(a, v); }
        else if (!strcmp(a, "--events")) { NEEDV(); opt.events = (long long)arg_num(a, v); }
        else if (!strcmp(a, "--rate")) { NEEDV(); opt.rate = arg_num(a, v); }
        else if (!strcmp(a, "--window")) { NEEDV(); opt.window = (int)arg_num(a, v); }
        else if (!strcmp(a, "--size")) { NEEDV(); opt.size = (int)arg_num(a, v); }
        else if (!strcmp(a, "--duration")) { NEEDV(); opt.duration = arg_num(a, v); }
        else if (!strcmp(a, "--hold")) { NEEDV(); opt.hold = arg_num(a, v); }
        else if (!strcmp(a, "--settle")) { NEEDV(); opt.settle = arg_num(a, v); }
        else if (!strcmp(a, "--drain")) { NEEDV(); opt.drain = arg_num(a, v); }
        else if (!strcmp(a, "--max-time")) { NEEDV(); opt.max_time = arg_num(a, v); }
        else if (!strcmp(a, "--expect")) { NEEDV(); opt.expect = (long long)arg_num(a, v); }
        else if (!strcmp(a, "--expect-end")) { opt.expect_end = 1; }
        else if (!strcmp(a, "--server-pid")) { NEEDV(); opt.server_pid = (int)arg_num(a, v); }
        else if (!strcmp(a, "--label")) { NEEDV(); opt.label = v; }
        else if (!strcmp(a, "--dump")) { opt.dump = 1; }
        else if (!strcmp(a, "--sub-ports")) {
            NEEDV();
            opt.n_sub_ports = 0;
            char buf[256];
            snprintf(buf, sizeof buf, "%s", v);
            char *save = NULL;
            for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                if (opt.n_sub_ports == MAX_SUB_PORTS) { fprintf(stderr, "loadgen: at most %d --sub-ports\n", MAX_SUB_PORTS); exit(2); }
                int pt = (int)arg_num(a, t);
                if (pt <= 0 || pt > 65535) { fprintf(stderr, "loadgen: bad port in --sub-ports: %s\n", t); exit(2); }
                opt.sub_ports[opt.n_sub_ports++] = pt;
            }
            if (opt.n_sub_ports == 0) { fprintf(stderr, "loadgen: --sub-ports needs a port\n"); exit(2); }
        }
        else if (!strcmp(a, "--storm-subs")) { NEEDV(); opt.storm_subs = (int)arg_num(a, v); }
        else if (!strcmp(a, "--storm-at")) { NEEDV(); opt.storm_at = arg_num(a, v); }
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); exit(0); }
        else { fprintf(stderr, "loadgen: unknown option %s\n", a); usage(); exit(2); }
#undef NEEDV
    }
    if (opt.subs < 0 || opt.subs > 1000000 || opt.pub_conns > MAX_PUB || opt.size > 64 * 1024 * 1024 ||
        opt.port <= 0 || opt.port > 65535 || opt.connect_conc < 1) {
        fprintf(stderr, "loadgen: option out of range\n");
        exit(2);
    }
    if (opt.storm_subs > opt.subs) { fprintf(stderr, "loadgen: --storm-subs exceeds --subs\n"); exit(2); }
    if (opt.events > 0 && opt.pub_conns < 1) opt.pub_conns = 1;
    if (opt.events == 0) opt.pub_conns = 0;
}

/* ------------------------------------------------------------------------------------------ */
/* connection state                                                                            */

enum { K_SUB = 1, K_PUB = 2, K_TIMER = 3 };
enum { S_IDLE0, S_CONNECTING, S_HEADERS, S_STREAM, S_CLOSED };
enum { B_CHUNKED, B_CLOSE, B_LENGTH };
enum { CH_SIZE, CH_EXT, CH_SIZE_LF, CH_DATA, CH_DATA_CR, CH_DATA_LF, CH_END };

typedef struct sub {
    uint8_t kind;
    uint8_t state;
    uint8_t body_mode;
    uint8_t cs;             /* chunk state */
    uint8_t skip_lf;        /* last line ended with CR: a following LF belongs to it */
    uint8_t bom;            /* bytes of a leading BOM matched so far; 255 = check done */
    uint8_t has_id_num;     /* last_id_num valid */
    uint8_t id_set;         /* an id field was seen in the event being built */
    uint8_t ended;          /* the server ended the body cleanly */
    uint8_t storm;          /* 1: reconnecting in the storm (not yet live), 2: live again, 3: caught up */
    int fd;
    int idx;
    uint32_t hdr_len;
    char *hdr;              /* only while reading headers */
    uint64_t chunk_left;
    uint32_t size_digits;
    uint64_t body_left;     /* B_LENGTH */
    /* SSE parser */
    uint32_t line_len;      /* total length of the current line */
    uint32_t data_head_len; /* stored prefix of the data buffer */
    uint64_t data_len;      /* total length of the data buffer */
    uint8_t id_len, ev_len;
    char line[LINE_CAP];
    char data_head[HEAD_CAP];
    char id[ID_CAP];
    char evname[EVNAME_CAP];
    uint64_t last_id_num;
    /* counts */
    uint64_t events, bench, foreign, comments, window_comments, data_bytes;
    uint64_t gaps, missing_in_gaps, out_of_order, id_regress;
    uint32_t next_seq[MAX_PUB];
    uint32_t count[MAX_PUB];
} sub_t;

typedef struct pub {
    uint8_t kind;
    uint8_t state;          /* S_CONNECTING, S_IDLE0 (ready), S_STREAM (request in flight), S_CLOSED */
    uint8_t hdr_done, chunked, close_after;
    int fd;
    int idx;
    uint32_t seq;           /* next sequence number on this connection */
    uint64_t g;             /* global number of the request in flight */
    uint64_t t_sent;
    char *wbuf;
    size_t wlen, woff, wcap;
    char rbuf[4096];
    size_t rlen;
    size_t hdr_end;
    long long clen;
    int status;
    uint64_t acked;         /* 202 responses */
} pub_t;

typedef struct { uint8_t kind; } timer_tag_t;

static int ep = -1;
static sub_t *subs;
static pub_t pubs[MAX_PUB];
static char *rbuf;
static struct sockaddr_in srv_addr, pub_addr, sub_addrs[MAX_SUB_PORTS];

/* global counters */
static uint64_t g_next = 0, g_oldest = 0, g_oldest_since = 0;
static uint32_t *ring;       /* deliveries per in-flight event (window accounting) */
static uint64_t ring_mask;
static uint64_t published_ok = 0, pub_errors = 0, pub_reconnects = 0, pub_status_other = 0;
static uint64_t window_stalls = 0;
static int established = 0, connecting = 0, next_to_open = 0, alive = 0;
static int sub_failed = 0, sub_non200 = 0, sub_closed_late = 0, sub_ended = 0, proto_errors = 0;
static int connect_errors = 0;
static uint64_t deliveries = 0, bytes_delivered = 0, wire_bytes = 0;
static uint64_t t_first_delivery = 0, t_last_delivery = 0, t_last_sent = 0;
static hist_t lat;
static hist_t pub_rtt;
/* resume storm: the steady set's latency before / during (until every storm stream is caught up) /
 * after the storm; the storm streams' own latency (replayed events included) */
static hist_t lat_before, lat_during, lat_after, lat_resumed;
static int storm_started = 0, storm_live = 0, storm_caught = 0, storm_failed = 0;
static uint64_t t_storm = 0, t_storm_live = 0, t_storm_caught = 0, g_storm = 0;
static uint64_t pub_late_max = 0;
static char last_err[160] = "";

static void note_err(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_err, sizeof last_err, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------------------------------ */
/* /proc sampling                                                                              */

typedef struct { double cpu_s; long rss_kb, hwm_kb; int ok; } psample_t;

static psample_t sample_proc(int pid) {
    psample_t s = {0, 0, 0, 0};
    if (pid <= 0) return s;
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return s;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p) return s;
    /* after ")": state(3) ppid(4) ... utime(14) stime(15) */
    unsigned long long ut = 0, st = 0;
    int field = 2;
    char *save = NULL;
    for (char *tok = strtok_r(p + 1, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        field++;
        if (field == 14) ut = strtoull(tok, NULL, 10);
        if (field == 15) { st = strtoull(tok, NULL, 10); break; }
    }
    s.cpu_s = (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    f = fopen(path, "r");
    if (!f) return s;
    while (fgets(buf, sizeof buf, f)) {
        if (!strncmp(buf, "VmRSS:", 6)) s.rss_kb = strtol(buf + 6, NULL, 10);
        else if (!strncmp(buf, "VmHWM:", 6)) s.hwm_kb = strtol(buf + 6, NULL, 10);
    }
    fclose(f);
    s.ok = 1;
    return s;
}

static double self_cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* ------------------------------------------------------------------------------------------ */
/* SSE parser                                                                                  */

static void json_str(FILE *f, const char *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20 || c == 0x7f) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static int parse_u64(const char **pp, const char *end, uint64_t *out) {
    const char *p = *pp;
    uint64_t v = 0;
    if (p >= end || *p < '0' || *p > '9') return 0;
    while (p < end && *p >= '0' && *p <= '9') {
        v = v * 10 + (uint64_t)(*p - '0');
        p++;
    }
    *out = v;
    *pp = p;
    return 1;
}

/* The Mercure form's fields before the payload: "topic=<topic, percent-encoded>&data=". */
static char mercure_prefix[2200];

static void make_mercure_prefix(void) {
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    n += (size_t)snprintf(mercure_prefix, sizeof mercure_prefix, "topic=");
    for (const unsigned char *c = (const unsigned char *)opt.mercure_topic; *c; c++) {
        if (n + 8 >= sizeof mercure_prefix) { fprintf(stderr, "loadgen: --mercure-topic too long\n"); exit(2); }
        if (isalnum(*c) || *c == '-' || *c == '.' || *c == '_' || *c == '*') {
            mercure_prefix[n++] = (char)*c;
        } else {
            mercure_prefix[n++] = '%';
            mercure_prefix[n++] = hex[*c >> 4];
            mercure_prefix[n++] = hex[*c & 15];
        }
    }
    snprintf(mercure_prefix + n, sizeof mercure_prefix - n, "&data=");
}

/* `pattern` with every "{i}" replaced by `idx`, into out; 0 when it does not fit. */
static int expand_index(char *out, size_t cap, const char *pattern, int idx) {
    size_t n = 0;
    for (const char *c = pattern; *c;) {
        if (!strncmp(c, "{i}", 3)) {
            int w = snprintf(out + n, cap - n, "%d", idx);
            if (w < 0 || (size_t)w >= cap - n) return 0;
            n += (size_t)w;
            c += 3;
        } else {
            if (n + 1 >= cap) return 0;
            out[n++] = *c++;
        }
    }
    out[n] = 0;
    return 1;
}

static void dispatch(sub_t *s, uint64_t now) {
    if (s->data_len == 0) { /* WHATWG: empty data buffer → no event */
        s->data_head_len = 0;
        s->ev_len = 0;
        s->id_set = 0;
        return;
    }
    uint64_t dlen = s->data_len - 1; /* drop the trailing LF */
    uint32_t hlen = s->data_head_len;
    if (hlen > dlen) hlen = (uint32_t)dlen;
    s->events++;
    if (s->id_set && s->id_len > 0) {
        uint64_t v = 0;
        const char *p = s->id;
        if (parse_u64(&p, s->id + s->id_len, &v) && p == s->id + s->id_len) {
            if (s->has_id_num && v <= s->last_id_num) s->id_regress++;
            s->last_id_num = v;
            s->has_id_num = 1;
        }
    }
    if (opt.dump && s->idx == 0) {
        fputs("{\"id\":", stderr);
        json_str(stderr, s->id, s->id_len);
        fputs(",\"event\":", stderr);
        json_str(stderr, s->evname, s->ev_len);
        fprintf(stderr, ",\"data_len\":%" PRIu64 ",\"data_head\":", dlen);
        json_str(stderr, s->data_head, hlen);
        fputs("}\n", stderr);
    }
    /* benchmark payload? "<g> <c> <s> <t>" */
    const char *p = s->data_head, *end = s->data_head + hlen;
    uint64_t g, c, q, t;
    int ok = parse_u64(&p, end, &g) && p < end && *p++ == ' ' && parse_u64(&p, end, &c) && p < end &&
             *p++ == ' ' && parse_u64(&p, end, &q) && p < end && *p++ == ' ' && parse_u64(&p, end, &t) &&
             (p == end || *p == ' ') && c < MAX_PUB && s->ev_len == 0;
    if (!ok) {
        s->foreign++;
    } else {
        s->bench++;
        deliveries++;
        bytes_delivered += dlen;
        s->data_bytes += dlen;
        s->count[c]++;
        uint32_t exp = s->next_seq[c];
        if (q == exp) {
            s->next_seq[c] = exp + 1;
        } else if (q > exp) {
            s->gaps++;
            s->missing_in_gaps += q - exp;
            s->next_seq[c] = (uint32_t)q + 1;
        } else {
            s->out_of_order++;
        }
        uint64_t l = now > t ? now - t : 0;
        h_add(&lat, l);
        if (opt.storm_subs > 0) {
            if (s->idx >= opt.subs - opt.storm_subs) {
                if (storm_started) h_add(&lat_resumed, l);
                if (s->storm == 2 && g >= g_storm) {
                    s->storm = 3;
                    if (++storm_caught == opt.storm_subs) t_storm_caught = now;
                }
            } else {
                h_add(!storm_started ? &lat_before : !t_storm_caught ? &lat_during : &lat_after, l);
            }
        }
        if (!t_first_delivery) t_first_delivery = now;
        t_last_delivery = now;
        if (ring && g >= g_oldest && g < g_next) ring[g & ring_mask]++;
    }
    s->data_len = 0;
    s->data_head_len = 0;
    s->ev_len = 0;
    s->id_set = 0;
}

/* Set once every stream is established: comments from then on count as received in the
 * measured window (a stream's opening comment does not). */
static int in_window = 0;

/* One complete line: l[0..stored) is its stored prefix, n its full length. */
static void sse_line(sub_t *s, const char *l, uint32_t n, uint32_t stored, uint64_t now) {
    if (n == 0) { dispatch(s, now); return; }
    if (l[0] == ':') { s->comments++; s->window_comments += (uint64_t)in_window; return; }
    const char *colon = memchr(l, ':', stored);
    uint32_t name_len, vstart;
    if (colon) {
        name_len = (uint32_t)(colon - l);
        vstart = name_len + 1;
        if (vstart < n && vstart < stored && l[vstart] == ' ') vstart++;
    } else {
        if (n > stored) return; /* unknown, over-long field name */
        name_len = n;
        vstart = n;
    }
    uint64_t vlen = n - vstart;
    const char *v = l + vstart;
    uint32_t vstored = vstart < stored ? stored - vstart : 0;
    if (name_len == 4 && !memcmp(l, "data", 4)) {
        /* data buffer += value + LF */
        if (s->data_head_len < HEAD_CAP) {
            uint32_t room = HEAD_CAP - s->data_head_len;
            uint32_t k = vstored < room ? vstored : room;
            memcpy(s->data_head + s->data_head_len, v, k);
            s->data_head_len += k;
            if (s->data_head_len < HEAD_CAP && k == vstored && vstored == vlen)
                s->data_head[s->data_head_len++] = '\n';
            else
                s->data_head_len = HEAD_CAP; /* head is full / truncated: stop storing */
        }
        s->data_len += vlen + 1;
    } else if (name_len == 2 && !memcmp(l, "id", 2)) {
        if (vstored == vlen && memchr(v, 0, vlen) == NULL) { /* WHATWG: ignore ids with NUL */
            uint32_t k = vlen < ID_CAP ? (uint32_t)vlen : ID_CAP;
            memcpy(s->id, v, k);
            s->id_len = (uint8_t)k;
            s->id_set = 1;
        }
    } else if (name_len == 5 && !memcmp(l, "event", 5)) {
        uint32_t k = vstored < EVNAME_CAP ? vstored : EVNAME_CAP;
        memcpy(s->evname, v, k);
        s->ev_len = (uint8_t)k;
    } else {
        /* retry and unknown fields: nothing to count */
    }
}

static void sse_feed(sub_t *s, const char *p, size_t n, uint64_t now) {
    while (n) {
        if (s->bom != 255) { /* a UTF-8 BOM at the very start of the stream is dropped */
            static const unsigned char bom[3] = {0xEF, 0xBB, 0xBF};
            if ((unsigned char)*p == bom[s->bom]) {
                s->bom++;
                p++; n--;
                if (s->bom == 3) s->bom = 255;
                continue;
            }
            /* not a BOM: replay what was matched (cannot happen for valid UTF-8 text) */
            uint8_t matched = s->bom;
            s->bom = 255;
            if (matched) sse_feed(s, (const char *)bom, matched, now);
            continue;
        }
        if (s->skip_lf) {
            s->skip_lf = 0;
            if (*p == '\n') { p++; n--; continue; }
        }
        const char *nl = memchr(p, '\n', n);
        size_t lim = nl ? (size_t)(nl - p) : n;
        const char *cr = memchr(p, '\r', lim);
        const char *e = cr ? cr : nl;
        size_t take = e ? (size_t)(e - p) : n;
        if (e && s->line_len == 0) {
            /* the whole line is in this buffer: parse it in place */
            if (*e == '\r') s->skip_lf = 1;
            sse_line(s, p, (uint32_t)take, (uint32_t)take, now);
            p = e + 1;
            n -= take + 1;
            continue;
        }
        if (take) {
            if (s->line_len < LINE_CAP) {
                size_t room = LINE_CAP - s->line_len;
                memcpy(s->line + s->line_len, p, take < room ? take : room);
            }
            s->line_len += (uint32_t)take;
        }
        if (!e) return;
        if (*e == '\r') s->skip_lf = 1;
        sse_line(s, s->line, s->line_len, s->line_len < LINE_CAP ? s->line_len : LINE_CAP, now);
        s->line_len = 0;
        p = e + 1;
        n -= take + 1;
    }
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* returns -1 on a protocol error */
static int body_feed(sub_t *s, const char *p, size_t n, uint64_t now) {
    if (s->body_mode == B_CLOSE) { sse_feed(s, p, n, now); return 0; }
    if (s->body_mode == B_LENGTH) {
        size_t k = n < s->body_left ? n : (size_t)s->body_left;
        sse_feed(s, p, k, now);
        s->body_left -= k;
        if (s->body_left == 0) s->ended = 1;
        return 0;
    }
    while (n) {
        switch (s->cs) {
        case CH_SIZE: {
            int h = hexval(*p);
            if (h >= 0) {
                if (++s->size_digits > 15) return -1;
                s->chunk_left = s->chunk_left * 16 + (uint64_t)h;
            } else if (*p == ';' && s->size_digits) {
                s->cs = CH_EXT;
            } else if (*p == '\r' && s->size_digits) {
                s->cs = CH_SIZE_LF;
            } else {
                return -1;
            }
            p++; n--;
            break;
        }
        case CH_EXT: {
            const char *cr = memchr(p, '\r', n);
            if (!cr) return 0;
            n -= (size_t)(cr - p) + 1;
            p = cr + 1;
            s->cs = CH_SIZE_LF;
            break;
        }
        case CH_SIZE_LF:
            if (*p != '\n') return -1;
            p++; n--;
            if (s->chunk_left == 0) { s->cs = CH_END; s->ended = 1; }
            else s->cs = CH_DATA;
            break;
        case CH_DATA: {
            size_t k = n < s->chunk_left ? n : (size_t)s->chunk_left;
            sse_feed(s, p, k, now);
            p += k; n -= k;
            s->chunk_left -= k;
            if (s->chunk_left == 0) s->cs = CH_DATA_CR;
            break;
        }
        case CH_DATA_CR:
            if (*p != '\r') return -1;
            p++; n--;
            s->cs = CH_DATA_LF;
            break;
        case CH_DATA_LF:
            if (*p != '\n') return -1;
            p++; n--;
            s->cs = CH_SIZE;
            s->size_digits = 0;
            s->chunk_left = 0;
            break;
        case CH_END: /* trailers after the last chunk: ignored */
            return 0;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* sockets                                                                                     */

static int open_socket_to(const struct sockaddr_in *addr) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (const struct sockaddr *)addr, sizeof *addr) < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static void ep_ctl(int op, int fd, uint32_t events, void *ptr) {
    struct epoll_event ev = {.events = events, .data.ptr = ptr};
    if (epoll_ctl(ep, op, fd, &ev) < 0 && op != EPOLL_CTL_DEL) {
        perror("epoll_ctl");
        exit(1);
    }
}

static void sub_close(sub_t *s) {
    if (s->fd >= 0) {
        ep_ctl(EPOLL_CTL_DEL, s->fd, 0, s);
        close(s->fd);
        s->fd = -1;
    }
    if (s->state == S_CONNECTING || s->state == S_HEADERS) connecting--;
    if (s->state == S_STREAM) alive--;
    free(s->hdr);
    s->hdr = NULL;
    s->state = S_CLOSED;
}

static void sub_open(sub_t *s) {
    s->kind = K_SUB;
    s->bom = 0;
    s->fd = open_socket_to(opt.n_sub_ports ? &sub_addrs[s->idx % opt.n_sub_ports] : &srv_addr);
    if (s->fd < 0) {
        connect_errors++;
        sub_failed++;
        note_err("connect: %s", strerror(errno));
        s->state = S_CLOSED;
        return;
    }
    s->state = S_CONNECTING;
    connecting++;
    ep_ctl(EPOLL_CTL_ADD, s->fd, EPOLLOUT, s);
}

static int ci_has(const char *hdrs, size_t n, const char *needle) {
    return memmem(hdrs, n, needle, strlen(needle)) != NULL;
}

/* Parse the response head in buf[0..n): returns the header length (incl. CRLFCRLF), 0 if
 * incomplete. Lower-cases header names and values in place (only the head). */
static size_t head_end(char *buf, size_t n) {
    char *e = memmem(buf, n, "\r\n\r\n", 4);
    if (!e) return 0;
    size_t len = (size_t)(e - buf) + 4;
    for (size_t i = 0; i < len; i++) buf[i] = (char)tolower((unsigned char)buf[i]);
    return len;
}

static int head_status(const char *buf, size_t n) {
    if (n < 12 || memcmp(buf, "http/1.", 7)) return -1;
    return atoi(buf + 9);
}

static long long head_clen(const char *buf, size_t n) {
    const char *p = memmem(buf, n, "\r\ncontent-length:", 17);
    if (!p) return -1;
    return atoll(p + 17);
}

static void sub_on_headers(sub_t *s, uint64_t now) {
    size_t hl = head_end(s->hdr, s->hdr_len);
    if (!hl) {
        if (s->hdr_len >= HDR_CAP) { proto_errors++; sub_failed++; note_err("headers too long"); sub_close(s); }
        return;
    }
    int status = head_status(s->hdr, hl);
    if (status != 200) {
        sub_non200++;
        sub_failed++;
        note_err("subscriber got status %d", status);
        sub_close(s);
        return;
    }
    if (ci_has(s->hdr, hl, "\r\ntransfer-encoding: chunked") || ci_has(s->hdr, hl, "\r\ntransfer-encoding:chunked")) {
        s->body_mode = B_CHUNKED;
    } else {
        long long cl = head_clen(s->hdr, hl);
        if (cl >= 0) { s->body_mode = B_LENGTH; s->body_left = (uint64_t)cl; }
        else s->body_mode = B_CLOSE;
    }
    s->cs = CH_SIZE;
    connecting--;
    s->state = S_STREAM;
    if (s->storm == 1) {
        s->storm = 2;
        if (++storm_live == opt.storm_subs) t_storm_live = now;
    } else {
        established++;
    }
    alive++;
    size_t rest = s->hdr_len - hl;
    char tmp[HDR_CAP];
    memcpy(tmp, s->hdr + hl, rest);
    free(s->hdr);
    s->hdr = NULL;
    if (rest && body_feed(s, tmp, rest, now) < 0) {
        proto_errors++;
        note_err("bad chunked framing");
        sub_close(s);
    }
}

static void sub_event(sub_t *s, uint32_t events) {
    if (s->state == S_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            connect_errors++;
            sub_failed++;
            note_err("connect: %s", strerror(err));
            sub_close(s);
            return;
        }
        char req[1024];
        char target[768];
        char resume[ID_CAP + 32] = "";
        if (s->storm == 1 && s->id_len > 0) snprintf(resume, sizeof resume, "Last-Event-ID: %.*s\r\n", (int)s->id_len, s->id);
        if (opt.sub_path != NULL && !expand_index(target, sizeof target, opt.sub_path, s->idx)) {
            fprintf(stderr, "request target too long\n");
            exit(2);
        }
        int n = opt.sub_path != NULL
                    ? snprintf(req, sizeof req,
                               "GET %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n"
                               "Cache-Control: no-cache\r\n%s\r\n",
                               target, opt.host, opt.port, resume)
                    : snprintf(req, sizeof req,
                               "GET /events/%s HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n"
                               "Cache-Control: no-cache\r\n%s\r\n",
                               opt.channel, opt.host, opt.port, resume);
        if (n < 0 || n >= (int)sizeof req) { fprintf(stderr, "request target too long\n"); exit(2); }
        ssize_t w = send(s->fd, req, (size_t)n, MSG_NOSIGNAL);
        if (w != n) {
            connect_errors++;
            sub_failed++;
            note_err("request write failed");
            sub_close(s);
            return;
        }
        s->hdr = malloc(HDR_CAP);
        if (!s->hdr) { perror("malloc"); exit(1); }
        s->hdr_len = 0;
        s->state = S_HEADERS;
        ep_ctl(EPOLL_CTL_MOD, s->fd, EPOLLIN | EPOLLRDHUP, s);
        return;
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP))) return;
    if (s->state == S_HEADERS) {
        ssize_t r = recv(s->fd, s->hdr + s->hdr_len, HDR_CAP - s->hdr_len, 0);
        if (r <= 0) {
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
            sub_failed++;
            note_err("closed before headers");
            sub_close(s);
            return;
        }
        wire_bytes += (uint64_t)r;
        s->hdr_len += (uint32_t)r;
        sub_on_headers(s, now_ns());
        return;
    }
    if (s->state != S_STREAM) return;
    ssize_t r = recv(s->fd, rbuf, RBUF_SIZE, 0);
    if (r < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
    }
    if (r <= 0) {
        if (s->ended || s->body_mode == B_CLOSE) sub_ended++;
        else sub_closed_late++;
        if (!s->ended && s->body_mode != B_CLOSE) note_err("stream closed by server without final chunk");
        sub_close(s);
        return;
    }
    wire_bytes += (uint64_t)r;
    if (body_feed(s, rbuf, (size_t)r, now_ns()) < 0) {
        proto_errors++;
        note_err("bad chunked framing");
        sub_close(s);
    }
}

/* ---- publisher ---- */

static void pub_connect(pub_t *p) {
    p->kind = K_PUB;
    p->fd = open_socket_to(&pub_addr);
    p->rlen = 0;
    p->hdr_done = 0;
    if (p->fd < 0) {
        note_err("publisher connect: %s", strerror(errno));
        p->state = S_CLOSED;
        return;
    }
    p->state = S_CONNECTING;
    ep_ctl(EPOLL_CTL_ADD, p->fd, EPOLLOUT, p);
}

static void pub_drop(pub_t *p, int failed_request) {
    if (p->fd >= 0) {
        ep_ctl(EPOLL_CTL_DEL, p->fd, 0, p);
        close(p->fd);
        p->fd = -1;
    }
    if (failed_request) {
        pub_errors++;
        if (ring && p->g >= g_oldest && p->g < g_next) ring[p->g & ring_mask] = UINT32_MAX / 2;
    }
    p->state = S_CLOSED;
}

static int pub_flush(pub_t *p) {
    while (p->woff < p->wlen) {
        ssize_t w = send(p->fd, p->wbuf + p->woff, p->wlen - p->woff, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN) {
                ep_ctl(EPOLL_CTL_MOD, p->fd, EPOLLIN | EPOLLOUT, p);
                return 0;
            }
            if (errno == EINTR) continue;
            return -1;
        }
        p->woff += (size_t)w;
    }
    ep_ctl(EPOLL_CTL_MOD, p->fd, EPOLLIN, p);
    return 0;
}

static void pub_send(pub_t *p, uint64_t now) {
    uint64_t g = g_next++;
    if (ring) ring[g & ring_mask] = 0;
    char head[4096];
    char payload_head[96];
    char auth[2200] = "";
    uint64_t t = now_ns();
    int ph = snprintf(payload_head, sizeof payload_head, "%" PRIu64 " %d %u %" PRIu64, g, p->idx, p->seq, t);
    size_t plen = (size_t)ph < (size_t)opt.size ? (size_t)opt.size : (size_t)ph;
    char channel[128];
    if (opt.pub_channels > 1)
        snprintf(channel, sizeof channel, "%s-%d", opt.channel, p->idx % opt.pub_channels);
    else
        snprintf(channel, sizeof channel, "%s", opt.channel);
    if (opt.pub_token) snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", opt.pub_token);
    /* Mercure: the form's fields before the payload (its spaces are sent as '+'). */
    size_t pre = opt.mercure_topic ? strlen(mercure_prefix) : 0;
    int hh = opt.mercure_topic
                 ? snprintf(head, sizeof head,
                            "POST /.well-known/mercure HTTP/1.1\r\nHost: %s:%d\r\n%s"
                            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: %zu\r\n\r\n%s",
                            opt.host, opt.pub_port > 0 ? opt.pub_port : opt.port, auth, pre + plen, mercure_prefix)
                 : snprintf(head, sizeof head,
                            "POST /events/%s HTTP/1.1\r\nHost: %s:%d\r\n%sContent-Type: text/plain\r\n"
                            "Content-Length: %zu\r\n\r\n",
                            channel, opt.host, opt.pub_port > 0 ? opt.pub_port : opt.port, auth, plen);
    if (hh < 0 || hh >= (int)sizeof head) { fprintf(stderr, "publish request head too long\n"); exit(2); }
    size_t need = (size_t)hh + plen;
    if (need > p->wcap) {
        free(p->wbuf);
        p->wcap = need + 256;
        p->wbuf = malloc(p->wcap);
        if (!p->wbuf) { perror("malloc"); exit(1); }
    }
    memcpy(p->wbuf, head, (size_t)hh);
    memcpy(p->wbuf + hh, payload_head, (size_t)ph);
    if (plen > (size_t)ph) {
        p->wbuf[hh + ph] = ' ';
        memset(p->wbuf + hh + ph + 1, 'x', plen - (size_t)ph - 1);
    }
    if (opt.mercure_topic)
        for (size_t i = (size_t)hh; i < need; i++)
            if (p->wbuf[i] == ' ') p->wbuf[i] = '+';
    p->wlen = need;
    p->woff = 0;
    p->g = g;
    p->seq++;
    p->t_sent = t;
    p->rlen = 0;
    p->hdr_done = 0;
    p->state = S_STREAM;
    t_last_sent = now;
    if (pub_flush(p) < 0) {
        note_err("publisher write failed");
        pub_drop(p, 1);
    }
}

static void pub_response_done(pub_t *p) {
    uint64_t now = now_ns();
    h_add(&pub_rtt, now - p->t_sent);
    if (p->status == (opt.mercure_topic ? 200 : 202)) {
        p->acked++;
        published_ok++;
    } else {
        pub_status_other++;
        pub_errors++;
        note_err("publish got status %d", p->status);
        if (ring && p->g >= g_oldest && p->g < g_next) ring[p->g & ring_mask] = UINT32_MAX / 2;
    }
    p->state = S_IDLE0;
    p->rlen = 0;
    p->hdr_done = 0;
    if (p->close_after) {
        ep_ctl(EPOLL_CTL_DEL, p->fd, 0, p);
        close(p->fd);
        p->fd = -1;
        pub_reconnects++;
        pub_connect(p);
    }
}

static void pub_event(pub_t *p, uint32_t events) {
    if (p->state == S_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) { note_err("publisher connect: %s", strerror(err)); pub_drop(p, 0); return; }
        p->state = S_IDLE0;
        ep_ctl(EPOLL_CTL_MOD, p->fd, EPOLLIN, p);
        return;
    }
    if ((events & EPOLLOUT) && p->state == S_STREAM && p->woff < p->wlen) {
        if (pub_flush(p) < 0) { note_err("publisher write failed"); pub_drop(p, 1); return; }
    }
    if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR))) return;
    ssize_t r = recv(p->fd, p->rbuf + p->rlen, sizeof p->rbuf - p->rlen, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (r <= 0) {
        /* closed: an idle keep-alive connection timing out is normal, a pending request is not */
        int inflight = p->state == S_STREAM;
        if (inflight) note_err("publisher connection closed with a request in flight");
        pub_drop(p, inflight);
        pub_reconnects++;
        pub_connect(p);
        return;
    }
    if (p->state != S_STREAM) { proto_errors++; note_err("unsolicited publisher response"); pub_drop(p, 0); pub_connect(p); return; }
    p->rlen += (size_t)r;
    if (!p->hdr_done) {
        size_t hl = head_end(p->rbuf, p->rlen);
        if (!hl) {
            if (p->rlen == sizeof p->rbuf) { proto_errors++; pub_drop(p, 1); pub_connect(p); }
            return;
        }
        p->hdr_done = 1;
        p->hdr_end = hl;
        p->status = head_status(p->rbuf, hl);
        p->clen = head_clen(p->rbuf, hl);
        p->chunked = ci_has(p->rbuf, hl, "\r\ntransfer-encoding: chunked") != 0;
        p->close_after = ci_has(p->rbuf, hl, "\r\nconnection: close") != 0;
    }
    size_t body = p->rlen - p->hdr_end;
    int complete;
    if (p->chunked) {
        complete = (body >= 5 && !memcmp(p->rbuf + p->rlen - 5, "0\r\n\r\n", 5) &&
                    (body == 5 || !memcmp(p->rbuf + p->rlen - 7, "\r\n", 2)));
    } else if (p->clen >= 0) {
        complete = body >= (size_t)p->clen;
    } else {
        complete = 0; /* close-delimited: completes on EOF; not expected from a hub */
    }
    if (complete) pub_response_done(p);
    else if (p->rlen == sizeof p->rbuf) { proto_errors++; pub_drop(p, 1); pub_connect(p); }
}

/* ------------------------------------------------------------------------------------------ */

static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static volatile sig_atomic_t interrupted = 0;
static void on_sig(int sig) { (void)sig; interrupted = 1; }

static void set_timer(int tfd, uint64_t when_ns) {
    struct itimerspec its = {0};
    if (when_ns) {
        its.it_value.tv_sec = (time_t)(when_ns / 1000000000ull);
        its.it_value.tv_nsec = (long)(when_ns % 1000000000ull);
    }
    timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

enum { P_CONNECT, P_HOLD, P_PUBLISH, P_DRAIN, P_DONE };
static const char *phase_names[] = {"connect", "hold", "publish", "drain", "done"};

int main(int argc, char **argv) {
    parse_args(argc, argv);
    if (opt.mercure_topic) make_mercure_prefix();
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_sig);
    signal(SIGTERM, on_sig);
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if ((rlim_t)(opt.subs + opt.pub_conns + 16) > rl.rlim_cur) {
        fprintf(stderr, "loadgen: %d subscribers need more file descriptors than RLIMIT_NOFILE=%llu\n",
                opt.subs, (unsigned long long)rl.rlim_cur);
        return 1;
    }
    memset(&srv_addr, 0, sizeof srv_addr);
    srv_addr.sin_family = AF_INET;
    srv_addr.sin_port = htons((uint16_t)opt.port);
    if (inet_pton(AF_INET, opt.host, &srv_addr.sin_addr) != 1) {
        fprintf(stderr, "loadgen: --host must be an IPv4 address\n");
        return 2;
    }
    pub_addr = srv_addr;
    for (int i = 0; i < opt.n_sub_ports; i++) {
        sub_addrs[i] = srv_addr;
        sub_addrs[i].sin_port = htons((uint16_t)opt.sub_ports[i]);
    }
    if (opt.pub_port > 0) pub_addr.sin_port = htons((uint16_t)opt.pub_port);
    ep = epoll_create1(EPOLL_CLOEXEC);
    rbuf = malloc(RBUF_SIZE);
    subs = calloc((size_t)(opt.subs ? opt.subs : 1), sizeof *subs);
    if (ep < 0 || !rbuf || !subs) { perror("setup"); return 1; }
    for (int i = 0; i < opt.subs; i++) { subs[i].idx = i; subs[i].fd = -1; subs[i].kind = K_SUB; subs[i].state = S_IDLE0; }
    if (opt.window > 0) {
        uint64_t r = 1;
        while (r < (uint64_t)opt.window * 2) r <<= 1;
        ring = calloc(r, sizeof *ring);
        ring_mask = r - 1;
    }
    timer_tag_t timer_tag = {K_TIMER};
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    ep_ctl(EPOLL_CTL_ADD, tfd, EPOLLIN, &timer_tag);

    psample_t s0 = sample_proc(opt.server_pid), s1 = {0, 0, 0, 0}, s2 = {0, 0, 0, 0};
    uint64_t t_start = now_ns();
    uint64_t t_connected = 0, t_established = 0, t_pub_start = 0, t_pub_end = 0, t_end = 0;
    double self_cpu_measure0 = 0;
    int phase = P_CONNECT;
    struct epoll_event evs[1024];
    uint64_t max_end = t_start + (uint64_t)(opt.max_time * 1e9);
    uint64_t connect_deadline = t_start + (uint64_t)(opt.connect_timeout * 1e9);
    uint64_t hold_end = 0, settle_end = 0, pub_deadline = 0, drain_deadline = 0;
    uint64_t period = opt.rate > 0 ? (uint64_t)(1e9 / opt.rate) : 0;
    uint64_t next_due = 0;
    const char *end_reason = "complete";

    for (int it = 0; phase != P_DONE; it++) {
        uint64_t now = now_ns();
        if (interrupted) { end_reason = "interrupted"; break; }
        if (now > max_end) { end_reason = "max-time"; note_err("run hit --max-time in phase %s", phase_names[phase]); break; }

        /* ---- phase logic ---- */
        if (phase == P_CONNECT) {
            while (next_to_open < opt.subs && connecting < opt.connect_conc) sub_open(&subs[next_to_open++]);
            int settled = (next_to_open == opt.subs && connecting == 0);
            if (settled || now > connect_deadline) {
                if (!settled) note_err("connect phase timed out: %d of %d established", established, opt.subs);
                t_connected = t_established = now_ns();
                in_window = 1;
                s1 = sample_proc(opt.server_pid);
                self_cpu_measure0 = self_cpu();
                if (opt.pub_conns > 0 && opt.events > 0) {
                    /* Settle for --hold seconds (none: publishing starts below, this same turn). */
                    phase = P_HOLD;
                    hold_end = now + (uint64_t)(opt.hold * 1e9);
                } else if (opt.expect >= 0 || opt.expect_end) {
                    phase = P_DRAIN;
                    t_pub_start = t_connected;
                    drain_deadline = now + (uint64_t)(opt.drain * 1e9);
                } else {
                    phase = P_HOLD;
                    hold_end = now + (uint64_t)((opt.settle + opt.hold) * 1e9);
                    settle_end = opt.settle > 0 ? now + (uint64_t)(opt.settle * 1e9) : 0;
                    in_window = settle_end == 0;
                }
            }
        }
        if (phase == P_HOLD && settle_end != 0 && now >= settle_end) {
            /* Settled: the measured window starts now. */
            settle_end = 0;
            t_connected = now_ns();
            in_window = 1;
            s1 = sample_proc(opt.server_pid);
            self_cpu_measure0 = self_cpu();
        }
        if (phase == P_HOLD && now >= hold_end) {
            if (!(opt.pub_conns > 0 && opt.events > 0)) {
                phase = P_DONE;
                break;
            }
            for (int i = 0; i < opt.pub_conns; i++) {
                pubs[i].idx = i;
                pubs[i].fd = -1;
                pub_connect(&pubs[i]);
            }
            phase = P_PUBLISH;
            t_pub_start = now_ns();
            g_oldest_since = t_pub_start;
            pub_deadline = t_pub_start + (uint64_t)(opt.duration * 1e9);
            next_due = t_pub_start;
        }
        if (phase == P_PUBLISH && opt.storm_subs > 0 && !storm_started &&
            now >= t_pub_start + (uint64_t)(opt.storm_at * 1e9)) {
            /* the resume storm: every storm stream closes, then all reconnect at once, each with
             * Last-Event-ID = its last event id; parser state restarts, the per-connection sequence
             * checks carry on (a resume must neither lose nor repeat an event) */
            storm_started = 1;
            g_storm = g_next;
            t_storm = now_ns();
            for (int i = opt.subs - opt.storm_subs; i < opt.subs; i++) {
                sub_t *s = &subs[i];
                if (s->state != S_STREAM) { storm_failed++; continue; }
                sub_close(s);
            }
            for (int i = opt.subs - opt.storm_subs; i < opt.subs; i++) {
                sub_t *s = &subs[i];
                if (s->fd >= 0 || s->storm) continue;
                s->storm = 1;
                s->ended = 0; s->skip_lf = 0; s->cs = CH_SIZE; s->chunk_left = 0; s->size_digits = 0;
                s->body_left = 0; s->line_len = 0; s->data_head_len = 0; s->data_len = 0; s->ev_len = 0;
                s->id_set = 0;
                sub_open(s);
            }
        }
        if (phase == P_PUBLISH) {
            /* window accounting: retire events every live subscriber has */
            if (ring) {
                uint32_t need = (uint32_t)alive;
                while (g_oldest < g_next && ring[g_oldest & ring_mask] >= need) { g_oldest++; g_oldest_since = now; }
                if (g_oldest == g_next) g_oldest_since = now; /* nothing in flight */
                if (g_oldest < g_next && now - g_oldest_since > 2000000000ull) {
                    window_stalls++;
                    g_oldest++;
                    g_oldest_since = now;
                }
            }
            int stop = (long long)g_next >= opt.events || now >= pub_deadline;
            if (stop) {
                int inflight = 0;
                for (int i = 0; i < opt.pub_conns; i++) inflight += pubs[i].state == S_STREAM || pubs[i].state == S_CONNECTING;
                if (!t_pub_end) t_pub_end = now;
                if (!inflight || now >= pub_deadline + 5000000000ull) {
                    phase = P_DRAIN;
                    drain_deadline = now + (uint64_t)(opt.drain * 1e9);
                }
            } else {
                for (int i = 0; i < opt.pub_conns && (long long)g_next < opt.events; i++) {
                    pub_t *p = &pubs[i];
                    if (p->state == S_CLOSED && p->fd < 0 && it % 64 == 0) { pub_reconnects++; pub_connect(p); }
                    if (p->state != S_IDLE0) continue;
                    if (ring && g_next - g_oldest >= (uint64_t)opt.window) break;
                    if (period) {
                        if (now < next_due) break;
                        if (now - next_due > pub_late_max) pub_late_max = now - next_due;
                        next_due += period;
                    }
                    pub_send(p, now);
                }
                if (period) set_timer(tfd, next_due);
            }
        }
        if (phase == P_DRAIN) {
            int done;
            if (opt.pub_conns > 0) {
                done = deliveries >= published_ok * (uint64_t)alive;
                if (storm_started && connecting > 0) done = 0; /* storm streams still coming back */
            } else {
                done = 1;
                if (opt.expect >= 0 && deliveries < (uint64_t)opt.expect * (uint64_t)established) done = 0;
                if (opt.expect_end && alive > 0) done = 0;
                if (alive == 0 && next_to_open == opt.subs) done = 1; /* nothing more can arrive */
            }
            if (done || now >= drain_deadline) {
                if (!done) { end_reason = "drain-timeout"; note_err("drain timed out"); }
                phase = P_DONE;
                break;
            }
        }

        /* ---- wait ---- */
        int timeout = 10;
        if (phase == P_PUBLISH && !period) timeout = 1;
        if (phase == P_HOLD) timeout = 100;
        int n = epoll_wait(ep, evs, 1024, timeout);
        if (n < 0 && errno != EINTR) { perror("epoll_wait"); return 1; }
        for (int i = 0; i < n; i++) {
            uint8_t kind = *(uint8_t *)evs[i].data.ptr;
            if (kind == K_SUB) sub_event((sub_t *)evs[i].data.ptr, evs[i].events);
            else if (kind == K_PUB) pub_event((pub_t *)evs[i].data.ptr, evs[i].events);
            else { uint64_t x; ssize_t rr = read(tfd, &x, sizeof x); (void)rr; }
        }
    }
    t_end = now_ns();
    if (!t_connected) t_connected = t_end;
    s2 = sample_proc(opt.server_pid);
    double self_cpu_measure = self_cpu() - self_cpu_measure0;

    /* ---- totals ---- */
    uint64_t events = 0, foreign = 0, comments = 0, window_comments = 0, gaps = 0, missing = 0, ooo = 0, idreg = 0;
    uint64_t lost = 0, dup = 0;
    uint64_t sent_by_conn[MAX_PUB];
    for (int c = 0; c < MAX_PUB; c++) sent_by_conn[c] = c < opt.pub_conns ? pubs[c].acked : 0;
    for (int i = 0; i < opt.subs; i++) {
        sub_t *s = &subs[i];
        events += s->events; foreign += s->foreign; comments += s->comments; window_comments += s->window_comments;
        gaps += s->gaps; missing += s->missing_in_gaps; ooo += s->out_of_order; idreg += s->id_regress;
        if (s->state == S_STREAM || s->bench || s->events) {
            if (opt.pub_conns > 0) {
                for (int c = 0; c < opt.pub_conns; c++) {
                    if (s->count[c] < sent_by_conn[c]) lost += sent_by_conn[c] - s->count[c];
                    else dup += s->count[c] - sent_by_conn[c];
                }
            } else if (opt.expect >= 0) {
                if (s->bench < (uint64_t)opt.expect) lost += (uint64_t)opt.expect - s->bench;
                else dup += s->bench - (uint64_t)opt.expect;
            }
        }
    }
    uint64_t expected = opt.pub_conns > 0 ? published_ok * (uint64_t)established
                                          : (opt.expect >= 0 ? (uint64_t)opt.expect * (uint64_t)established : 0);
    double span = 0;
    if (t_last_delivery > t_pub_start && t_pub_start) span = (double)(t_last_delivery - t_pub_start) / 1e9;
    double pub_span = t_pub_end > t_pub_start ? (double)(t_pub_end - t_pub_start) / 1e9 : 0;
    double measure_s = (double)(t_end - t_connected) / 1e9;
    double srv_cpu = (s1.ok && s2.ok) ? s2.cpu_s - s1.cpu_s : -1;
    int ok = established == opt.subs && sub_failed == 0 && proto_errors == 0 && pub_errors == 0 &&
             gaps == 0 && ooo == 0 && idreg == 0 && lost == 0 && dup == 0 && !strcmp(end_reason, "complete") &&
             (opt.pub_conns > 0 || opt.expect_end || sub_closed_late == 0) &&
             (opt.storm_subs == 0 || (storm_started && storm_failed == 0 && storm_caught == opt.storm_subs));

    printf("{\"label\":");
    json_str(stdout, opt.label, strlen(opt.label));
    printf(",\"ok\":%s,\"end\":\"%s\",\"subs\":%d,\"established\":%d,\"sub_failed\":%d,\"sub_non200\":%d,"
           "\"connect_errors\":%d,\"sub_closed_by_server\":%d,\"sub_ended_cleanly\":%d,\"alive_at_end\":%d,"
           "\"protocol_errors\":%d,\"connect_s\":%.3f,",
           ok ? "true" : "false", end_reason, opt.subs, established, sub_failed, sub_non200, connect_errors,
           sub_closed_late, sub_ended, alive, proto_errors, (double)((t_established ? t_established : t_connected) - t_start) / 1e9);
    printf("\"size\":%d,\"rate\":%.3f,\"window\":%d,\"pub_conns\":%d,\"published\":%" PRIu64 ",\"pub_errors\":%" PRIu64
           ",\"pub_reconnects\":%" PRIu64 ",\"pub_s\":%.3f,\"pub_per_s\":%.1f,\"pub_late_max_ms\":%.3f,\"window_stalls\":%" PRIu64 ",",
           opt.size, opt.rate, opt.window, opt.pub_conns, published_ok, pub_errors, pub_reconnects, pub_span,
           pub_span > 0 ? (double)published_ok / pub_span : 0, (double)pub_late_max / 1e6, window_stalls);
    printf("\"events\":%" PRIu64 ",\"deliveries\":%" PRIu64 ",\"expected\":%" PRIu64 ",\"foreign\":%" PRIu64
           ",\"comments\":%" PRIu64 ",\"window_comments\":%" PRIu64 ",\"gaps\":%" PRIu64 ",\"missing_in_gaps\":%" PRIu64 ",\"out_of_order\":%" PRIu64
           ",\"id_regress\":%" PRIu64 ",\"lost\":%" PRIu64 ",\"duplicates\":%" PRIu64 ",",
           events, deliveries, expected, foreign, comments, window_comments, gaps, missing, ooo, idreg, lost, dup);
    printf("\"payload_bytes\":%" PRIu64 ",\"wire_bytes\":%" PRIu64 ",\"delivery_s\":%.3f,\"deliveries_per_s\":%.1f,"
           "\"payload_mb_per_s\":%.3f,",
           bytes_delivered, wire_bytes, span, span > 0 ? (double)deliveries / span : 0,
           span > 0 ? (double)bytes_delivered / span / 1e6 : 0);
    printf("\"lat_n\":%" PRIu64 ",\"lat_p50_us\":%.1f,\"lat_p90_us\":%.1f,\"lat_p99_us\":%.1f,\"lat_max_us\":%.1f,"
           "\"lat_mean_us\":%.1f,\"pub_rtt_p50_us\":%.1f,\"pub_rtt_p99_us\":%.1f,",
           lat.n, h_pct(&lat, 50) / 1e3, h_pct(&lat, 90) / 1e3, h_pct(&lat, 99) / 1e3, lat.max / 1e3,
           lat.n ? (double)lat.sum / (double)lat.n / 1e3 : 0, h_pct(&pub_rtt, 50) / 1e3, h_pct(&pub_rtt, 99) / 1e3);
    printf("\"measure_s\":%.3f,\"server_pid\":%d,\"server_cpu_s_connect\":%.3f,\"server_cpu_s\":%.3f,"
           "\"server_rss_kb_start\":%ld,\"server_rss_kb_connected\":%ld,\"server_rss_kb_end\":%ld,\"server_hwm_kb\":%ld,"
           "\"loadgen_cpu_s\":%.3f,\"error\":",
           measure_s, opt.server_pid, (s0.ok && s1.ok) ? s1.cpu_s - s0.cpu_s : -1, srv_cpu, s0.rss_kb, s1.rss_kb,
           s2.rss_kb, s2.hwm_kb, self_cpu_measure);
    json_str(stdout, last_err, strlen(last_err));
    printf(",\"sub_ports\":%d", opt.n_sub_ports ? opt.n_sub_ports : 1);
    if (opt.storm_subs > 0) {
        const hist_t *hs[] = {&lat_before, &lat_during, &lat_after, &lat_resumed};
        const char *hn[] = {"before", "during", "after", "resumed"};
        printf(",\"storm_subs\":%d,\"storm_started\":%d,\"storm_failed\":%d,\"storm_live\":%d,\"storm_caught\":%d,"
               "\"storm_live_s\":%.3f,\"storm_caught_s\":%.3f,\"storm_g\":%" PRIu64,
               opt.storm_subs, storm_started, storm_failed, storm_live, storm_caught,
               t_storm_live ? (double)(t_storm_live - t_storm) / 1e9 : -1.0,
               t_storm_caught ? (double)(t_storm_caught - t_storm) / 1e9 : -1.0, g_storm);
        for (int i = 0; i < 4; i++)
            printf(",\"storm_lat_%s_n\":%" PRIu64 ",\"storm_lat_%s_p50_us\":%.1f,\"storm_lat_%s_p99_us\":%.1f,"
                   "\"storm_lat_%s_max_us\":%.1f",
                   hn[i], hs[i]->n, hn[i], h_pct(hs[i], 50) / 1e3, hn[i], h_pct(hs[i], 99) / 1e3, hn[i], hs[i]->max / 1e3);
    }
    printf("}\n");
    fflush(stdout);
    return 0;
}
