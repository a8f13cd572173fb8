/* The request before any route sees it: its target (URI-log callback), its footprint in the
 * connection's pool, and its head (RFC 9112 framing). */
#include "shim_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- Query size (see mhd_shim.h) ---- */
static const char msse_shim_query_marker = 0;

const void *msse_shim_query_too_large_marker(void) { return &msse_shim_query_marker; }

static const char msse_shim_path_nul_marker_value = 0;

const void *msse_shim_path_nul_marker(void) { return &msse_shim_path_nul_marker_value; }

/* Called by libmicrohttpd with the raw request target, in place in its read buffer, before it
 * splits off and parses the query (the pointer is const only in the callback's signature). */
void *msse_shim_uri_log(void *cls, const char *uri, struct MHD_Connection *connection) {
    size_t pool = (size_t)(uintptr_t)cls;
    msse_shim_mark_daemon_thread(); /* the first callback of every request */
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
     * NUL) and searches it for '?' over that length; a raw NUL inside ends the path early. The
     * tracker's record of the connection (its socket context) carries what the URI-log callback
     * saw of the raw target; only a connection whose record could not be allocated has none. */
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
        c->http11 = version != NULL && strcmp(version, MHD_HTTP_VERSION_1_1) == 0;
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
