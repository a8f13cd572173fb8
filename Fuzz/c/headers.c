/* Fuzz target: arbitrary request heads (and whatever follows them) sent to a real server.
 *
 * Built by Fuzz/run.sh like the cabi target (clang -fsanitize=fuzzer,address against
 * .build/debug/libMicroSSEC.so). LLVMFuzzerInitialize starts one server on 127.0.0.1 port 0 with
 * the C API (publishing on, no token, so well-formed POSTs get 202). Each input is sent on a new
 * loopback connection (at most MAX_INPUT bytes), the connection is half-closed and the answer read
 * with a short timeout (a stream's answer only up to the end of its head). The oracle:
 *   - no crash, no ASan report in the harness (the library itself when FUZZ_CABI_LIB is set);
 *   - an answer, when any byte comes, starts with a status line `HTTP/1.1 NNN ` (after any
 *     `100 Continue`), never other bytes;
 *   - when the first answer is 2xx, the first request's head (RFC 9112) has no NUL with more of
 *     its line after it, no CR that is not followed by LF, not both Content-Length and
 *     Transfer-Encoding, no conflicting or non-decimal Content-Length, no Transfer-Encoding other
 *     than one `chunked`, no space before a colon (a header name that is not a token) and no
 *     obs-fold;
 *   - nothing leaks across connections: before every input a canary request on its own
 *     connection carries a secret (in its path and a header); it must get its own 404 naming its
 *     path, and no later answer may hold the secret unless the input itself does.
 * Not violations, counted and printed at exit: header lines without a colon (libmicrohttpd
 * 0.9.75 drops them), and NULs that end a line. libmicrohttpd turns a line's CR and LF into NULs
 * in place before any callback sees the head, so afterwards `3\0\n` reads exactly like `3\r\n`
 * (and a line `\0\n` like the empty line that ends the head): the oracle reads a NUL just before
 * a LF as a CR. The server refuses every NUL with bytes after it on its line and NUL runs longer
 * than a line end allows; the rest is a known limit (docs/RELIABILITY.md, finding 12).
 */
#define _GNU_SOURCE
#include <microsse.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "FUZZ PROPERTY VIOLATED: " __VA_ARGS__);                                   \
        fputc('\n', stderr);                                                                       \
        abort();                                                                                   \
    } while (0)

enum { MAX_INPUT = 8192, MAX_ANSWER = 65536, READ_MS = 300 };

static msse_server *server;
static uint16_t port;
static char secret[40];
static unsigned long inputs, answered, ok2xx, colonless2xx, trailingnul2xx, silent;

static void report(void) {
    fprintf(stderr,
            "headers: %lu inputs, %lu answered, %lu 2xx, %lu silent closes, 2xx with a colon-less line %lu, "
            "with NULs ending a line %lu\n",
            inputs, answered, ok2xx, silent, colonless2xx, trailingnul2xx);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    msse_config cfg;
    msse_config_init(&cfg);
    cfg.port = 0;
    cfg.publishing = 1;
    cfg.history_count = 4;
    cfg.history_bytes = 4096;
    cfg.max_publish_bytes = 4096;
    cfg.heartbeat_seconds = 1; /* streams whose peer is gone are freed at the next heartbeat */
    cfg.write_timeout_seconds = 1;
    cfg.connection_timeout_seconds = 2;
    cfg.connection_memory_limit = 8192;
    if (msse_server_create(&cfg, &server) != MSSE_OK || server == NULL) FAIL("msse_server_create failed");
    if (msse_server_start(server) != MSSE_OK) FAIL("msse_server_start failed: %s", msse_server_errmsg(server));
    port = msse_server_port(server);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    srand((unsigned)(ts.tv_nsec ^ ts.tv_sec ^ getpid()));
    snprintf(secret, sizeof secret, "Zq%08x%08xQz", (unsigned)rand(), (unsigned)rand());
    atexit(report);
    return 0;
}

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* libFuzzer's timer signal interrupts system calls (EINTR): a connect so interrupted is retried
 * on a new socket; send, poll and recv are simply called again. */
static int connect_server(void) {
    int fd = -1;
    for (int attempt = 0; fd < 0; attempt++) {
        fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0) FAIL("socket: %s", strerror(errno));
        struct sockaddr_in a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) break;
        if (errno != EINTR || attempt >= 10) FAIL("connect: %s", strerror(errno));
        close(fd);
        fd = -1;
    }
    struct linger l = {1, 0}; /* close with a reset: no TIME_WAIT pile-up over millions of inputs */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    return fd;
}

static void send_all(int fd, const uint8_t *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return; /* the server may close early (a refused head); that is an answer too */
        p += w;
        n -= (size_t)w;
    }
}

static const char *find(const char *hay, size_t n, const char *needle) {
    return memmem(hay, n, needle, strlen(needle));
}

/* Reads until EOF, MAX_ANSWER bytes, READ_MS without a byte, or the end of an event stream's head. */
static size_t read_answer(int fd, char *buf) {
    size_t got = 0;
    long long deadline = now_ms() + READ_MS;
    while (got < MAX_ANSWER) {
        int left = (int)(deadline - now_ms());
        if (left <= 0) break;
        struct pollfd p = {fd, POLLIN, 0};
        int ready = poll(&p, 1, left);
        if (ready < 0 && errno == EINTR) continue;
        if (ready <= 0) break;
        ssize_t r = recv(fd, buf + got, MAX_ANSWER - got, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
        const char *end = find(buf, got, "\r\n\r\n");
        if (end != NULL && find(buf, (size_t)(end - buf), "text/event-stream") != NULL) break;
    }
    return got;
}

static int status_line(const char *p, size_t n) {
    if (n < 13 || memcmp(p, "HTTP/1.1 ", 9) != 0) return -1;
    for (int i = 9; i < 12; i++) {
        if (p[i] < '0' || p[i] > '9') return -1;
    }
    if (p[12] != ' ') return -1;
    return (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
}

static int is_tchar(unsigned char c) {
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return 1;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int equals_ci(const uint8_t *a, size_t n, const char *b) {
    if (strlen(b) != n) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char x = a[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z') x = (unsigned char)(x + 32);
        if (y >= 'A' && y <= 'Z') y = (unsigned char)(y + 32);
        if (x != y) return 0;
    }
    return 1;
}

/* The RFC 9112 oracle for the first request's head: NULL when it is acceptable, else what is
 * wrong. *colonless is set when a header line has no colon, *trailing_nul when a line ends in
 * NULs (neither a violation; both counted). */
static const char *head_defect(const uint8_t *d, size_t n, int *colonless, int *trailing_nul) {
    size_t i = 0;
    /* Empty lines before the request line are skipped; so are lines starting with a NUL, which
     * libmicrohttpd takes for empty (a known limit: docs/RELIABILITY.md, finding 12). */
    for (;;) {
        while (i < n && (d[i] == '\n' || (d[i] == '\r' && i + 1 < n && d[i + 1] == '\n'))) i++;
        if (i >= n || d[i] != '\0') break;
        while (i < n && d[i] != '\n') i++;
    }
    int line_no = 0, cls = 0, tes = 0;
    long long cl = -1;
    while (i < n) {
        size_t start = i;
        while (i < n && d[i] != '\n') i++;
        size_t end = i; /* [start, end) is the line without its LF */
        if (i < n) i++;
        if (end > start && d[end - 1] == '\r') end--;
        /* NULs that end a line hide nothing; they are counted, not refused (see the top). */
        size_t text_end = end;
        while (text_end > start && d[text_end - 1] == '\0') text_end--;
        if (text_end < end) *trailing_nul = 1;
        for (size_t k = start; k < text_end; k++) {
            if (d[k] == '\0') return "NUL in the head, with more of its line after it";
            if (d[k] == '\r') return "bare CR in the head";
        }
        /* The empty line ends the head; so does a line of NULs only, which libmicrohttpd takes
         * for empty (a known limit: docs/RELIABILITY.md, finding 12). */
        if (end == start || text_end == start) break;
        /* So does a line `:` (libmicrohttpd NULs the colon, then the line is empty: finding 13). */
        if (line_no > 0 && text_end == start + 1 && d[start] == ':') break;
        end = text_end;
        if (line_no++ == 0) continue; /* the request line */
        if (d[start] == ' ' || d[start] == '\t') return "obs-fold";
        const uint8_t *colon = memchr(d + start, ':', end - start);
        if (colon == NULL) {
            *colonless = 1;
            continue;
        }
        size_t name_len = (size_t)(colon - (d + start));
        if (name_len == 0) return "empty header name";
        for (size_t k = 0; k < name_len; k++) {
            if (!is_tchar(d[start + k])) return "header name not a token (space before colon?)";
        }
        const uint8_t *v = colon + 1, *ve = d + end;
        while (v < ve && (*v == ' ' || *v == '\t')) v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        size_t vn = (size_t)(ve - v);
        for (size_t k = 0; k < vn; k++) {
            if (v[k] < 0x20 && v[k] != '\t') return "control byte in a value";
            if (v[k] == 0x7f) return "DEL in a value";
        }
        if (equals_ci(d + start, name_len, "Content-Length")) {
            if (vn == 0 || vn > 18) return "Content-Length not 1-18 digits";
            long long x = 0;
            for (size_t k = 0; k < vn; k++) {
                if (v[k] < '0' || v[k] > '9') return "Content-Length not decimal";
                x = x * 10 + (v[k] - '0');
            }
            if (cls++ > 0 && x != cl) return "conflicting Content-Length";
            cl = x;
        } else if (equals_ci(d + start, name_len, "Transfer-Encoding")) {
            if (tes++ > 0) return "two Transfer-Encoding headers";
            if (!equals_ci(v, vn, "chunked")) return "Transfer-Encoding other than chunked";
        }
    }
    if (cls > 0 && tes > 0) return "Content-Length and Transfer-Encoding";
    return NULL;
}

/* The canary: its own 404 naming its path, on a fresh connection, just before the input. */
static void canary(char *buf) {
    char req[256];
    int len = snprintf(req, sizeof req, "GET /leak-%s HTTP/1.1\r\nHost: x\r\nX-Canary: %s\r\nConnection: close\r\n\r\n",
                       secret, secret);
    int fd = connect_server();
    send_all(fd, (const uint8_t *)req, (size_t)len);
    shutdown(fd, SHUT_WR);
    size_t got = read_answer(fd, buf);
    close(fd);
    char path[64];
    snprintf(path, sizeof path, "/leak-%s", secret);
    if (status_line(buf, got) != 404 || find(buf, got, path) == NULL)
        FAIL("the canary request did not get its own 404 (%zu bytes: %.80s)", got, buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static char buf[MAX_ANSWER + 1];
    if (size > MAX_INPUT) size = MAX_INPUT;
    inputs++;
    canary(buf);

    int fd = connect_server();
    send_all(fd, data, size);
    shutdown(fd, SHUT_WR);
    size_t got = read_answer(fd, buf);
    close(fd);
    if (got == 0) {
        silent++;
        return 0;
    }
    answered++;

    /* Skip interim 100 Continue answers. */
    size_t off = 0;
    int status = status_line(buf, got);
    while (status == 100) {
        const char *end = find(buf + off, got - off, "\r\n\r\n");
        if (end == NULL) break;
        off = (size_t)(end + 4 - buf);
        if (off == got) break;
        status = status_line(buf + off, got - off);
    }
    if (status < 0) {
        int shown = (int)(got - off < 60 ? got - off : 60);
        FAIL("answer does not start with a status line: '%.*s'", shown, buf + off);
    }
    if (status < 100 || status > 599) FAIL("status %d out of range", status);

    if (memmem(data, size, secret, strlen(secret)) == NULL && find(buf, got, secret) != NULL)
        FAIL("an answer holds the canary's secret from another connection");

    /* Distinct statuses are distinct branches: libFuzzer keeps inputs reaching new ones. */
    switch (status) {
    case 200: break;
    case 202: break;
    case 400: break;
    case 404: break;
    case 405: break;
    case 413: break;
    case 414: break;
    case 431: break;
    case 505: break;
    default: break;
    }
    if (status >= 200 && status < 300) {
        ok2xx++;
        /* A NUL just before a LF reads as a CR once libmicrohttpd has parsed the head in place
         * (see the top): the oracle reads it so too. */
        static uint8_t head[MAX_INPUT];
        memcpy(head, data, size);
        for (size_t k = 0; k + 1 < size; k++) {
            if (head[k] == '\0' && head[k + 1] == '\n') head[k] = '\r';
        }
        int colonless = 0, trailing_nul = 0;
        const char *defect = head_defect(head, size, &colonless, &trailing_nul);
        if (defect != NULL) FAIL("answered %d to a head with a defect: %s", status, defect);
        if (colonless) colonless2xx++;
        if (trailing_nul) trailingnul2xx++;
    }
    return 0;
}
