/* Fuzz target: the C ABI's entry points with hostile arguments (include/microsse.h).
 *
 * Built by Fuzz/run.sh with the toolchain's clang -fsanitize=fuzzer,address against
 * .build/debug/libMicroSSEC.so. Each input is split at 0xFF into fields that become the
 * arguments of msse_publish / msse_publish_event / msse_config fields / msse_strerror; NULL
 * pointers, embedded NULs, invalid UTF-8 and odd lengths are all reachable. The oracle:
 *   - no crash, no ASan report, nothing escapes as a trap (a Swift precondition would abort);
 *   - msse_publish returns MSSE_OK exactly when every argument is valid by the header's rules,
 *     and otherwise the documented error code;
 *   - the server's published counter grows by one per MSSE_OK and not otherwise;
 *   - msse_strerror and msse_server_errmsg never return NULL;
 *   - msse_publish_event writes a NUL-terminated id into id_out, or MSSE_ESPACE, never past it.
 */
#include <microsse.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "FUZZ PROPERTY VIOLATED: " __VA_ARGS__);                                   \
        fputc('\n', stderr);                                                                       \
        abort();                                                                                   \
    } while (0)

static msse_server *server;
static unsigned long inputs;
static const size_t max_publish = 4096;

static void make_server(void) {
    msse_config cfg;
    msse_config_init(&cfg);
    cfg.port = 0;
    cfg.history_count = 4;
    cfg.history_bytes = 4096;
    cfg.max_publish_bytes = max_publish;
    if (msse_server_create(&cfg, &server) != MSSE_OK || server == NULL) FAIL("msse_server_create failed");
}

static int valid_utf8(const unsigned char *b, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = b[i], need, min;
        uint32_t v;
        if (c < 0x80) { i++; continue; }
        else if (c >= 0xC2 && c <= 0xDF) { need = 1; min = 0x80; v = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { need = 2; min = 0x800; v = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { need = 3; min = 0x10000; v = c & 0x07; }
        else return 0;
        if (i + need >= n) return 0;
        for (unsigned k = 1; k <= need; k++) {
            if ((b[i + k] & 0xC0) != 0x80) return 0;
            v = v << 6 | (b[i + k] & 0x3F);
        }
        if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
        i += need + 1;
    }
    return 1;
}

static int valid_channel(const char *s) {
    size_t n = strlen(s);
    if (n < 1 || n > 128) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '~' || c == '-'))
            return 0;
    }
    return 1;
}

static int has_crlf(const char *s) { return s != NULL && (strchr(s, '\r') != NULL || strchr(s, '\n') != NULL); }
static int utf8_str(const char *s) { return s == NULL || valid_utf8((const unsigned char *)s, strlen(s)); }

static uint64_t published(void) {
    msse_stats st;
    memset(&st, 0, sizeof st);
    st.size = sizeof st;
    if (msse_server_stats(server, &st) != MSSE_OK) FAIL("msse_server_stats failed");
    return st.published;
}

/* Copies field `k` of the input (fields split at 0xFF) into a fresh NUL-terminated heap string, so
 * ASan sees reads past it; NULL when the field is absent. */
static char *field(const uint8_t *data, size_t size, int k, size_t *len) {
    size_t start = 0;
    for (int f = 0; f < k; f++) {
        const uint8_t *p = memchr(data + start, 0xFF, size - start);
        if (p == NULL) return NULL;
        start = (size_t)(p - data) + 1;
    }
    const uint8_t *end = memchr(data + start, 0xFF, size - start);
    size_t n = end ? (size_t)(end - (data + start)) : size - start;
    char *s = malloc(n + 1);
    memcpy(s, data + start, n);
    s[n] = 0;
    if (len) *len = n;
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (server == NULL || ++inputs % 5000 == 0) {
        msse_server_destroy(server);
        server = NULL;
        make_server();
    }
    if (size < 1) return 0;
    uint8_t mode = data[0];
    data++;
    size--;

    if (msse_strerror((int)(int8_t)mode * 97) == NULL || msse_strerror(-(int)mode) == NULL) FAIL("strerror NULL");
    if (msse_server_errmsg(server) == NULL || msse_server_errmsg(NULL) == NULL) FAIL("errmsg NULL");

    size_t data_len = 0;
    char *channel = (mode & 1) ? field(data, size, 0, NULL) : NULL;
    char *event = (mode & 2) ? field(data, size, 1, NULL) : NULL;
    char *id = (mode & 4) ? field(data, size, 2, NULL) : NULL;
    char *body = field(data, size, 3, &data_len);
    if (body == NULL && (mode & 8)) data_len = 1 + mode; /* NULL data with a length: EINVAL */
    if (body != NULL && (mode & 16)) data_len = data_len / 2; /* a length shorter than the bytes */

    int expect = MSSE_OK;
    if (channel == NULL || (body == NULL && data_len > 0)) expect = MSSE_EINVAL;
    else if (!valid_channel(channel)) expect = MSSE_ECHANNEL;
    else if (!utf8_str(event) || !utf8_str(id) || (body && !valid_utf8((unsigned char *)body, data_len)))
        expect = MSSE_EUTF8;
    else if (has_crlf(event)) expect = MSSE_EEVENT;
    else if (has_crlf(id)) expect = MSSE_EID;
    else if (data_len > max_publish) expect = MSSE_ETOOBIG;

    uint64_t before = published();
    int rc;
    if (mode & 32) {
        msse_event ev;
        msse_event_init(&ev);
        ev.event = event;
        ev.id = id;
        ev.data = body;
        ev.len = data_len;
        ev.retry_ms = (mode & 64) ? -1 : (int)mode;
        size_t out_size = (size_t)(mode >> 6) * 7; /* 0, 7, 14 or 21 bytes */
        char *out = out_size ? malloc(out_size) : NULL;
        rc = msse_publish_event(server, channel, &ev, out, out_size);
        if (rc == MSSE_OK && out != NULL) {
            if (memchr(out, 0, out_size) == NULL) FAIL("id_out not NUL-terminated");
            if (id != NULL && strcmp(out, id) != 0) FAIL("id_out '%s' != given id '%s'", out, id);
        }
        free(out);
        /* A too-small id_out may be reported as MSSE_ESPACE after publishing. */
        if (rc == MSSE_ESPACE && expect == MSSE_OK) expect = MSSE_ESPACE;
    } else {
        rc = msse_publish(server, channel, event, id, body, data_len);
    }
    uint64_t after = published();
    /* Several invalid arguments at once may be reported in another order; any error is then fine. */
    if (expect == MSSE_OK || expect == MSSE_ESPACE || rc == MSSE_OK) {
        if (rc != expect) FAIL("publish returned %d (%s), expected %d", rc, msse_strerror(rc), expect);
    } else if (rc >= 0 || msse_strerror(rc) == NULL) {
        FAIL("publish returned %d for invalid arguments (expected %d)", rc, expect);
    }
    uint64_t want = (rc == MSSE_OK || (rc == MSSE_ESPACE)) ? 1 : 0;
    if (rc == MSSE_ESPACE && after == before) want = 0;
    if (after - before != want) FAIL("published counter moved by %llu for rc %d", (unsigned long long)(after - before), rc);

    /* Hostile NULLs on the rest of the publishing surface. */
    if (msse_publish(NULL, "a", NULL, NULL, "x", 1) != MSSE_EINVAL) FAIL("NULL server accepted");
    if (msse_publish_event(server, "a", NULL, NULL, 0) != MSSE_EINVAL) FAIL("NULL event accepted");
    msse_server_destroy(NULL);

    free(channel);
    free(event);
    free(id);
    free(body);
    return 0;
}
