/*
 * Error paths of the C ABI, from C: every bad argument returns its documented negative code and
 * nothing crashes. Prints one line per failed check and exits 1 if any failed, else prints "ok".
 * Built with -std=c99 -Wall -Wextra -Werror -pedantic and run by Tests/CABITests (`make check` here).
 */
#include <stdio.h>
#include <string.h>

#include <microsse.h>

static int failures = 0;

#define EXPECT_CODE(call, want)                                                                      \
    do {                                                                                             \
        int got_ = (call);                                                                           \
        if (got_ != (want)) {                                                                        \
            printf("FAIL line %d: %s returned %d (%s), want %d (%s)\n", __LINE__, #call, got_,       \
                   msse_strerror(got_), (want), msse_strerror(want));                                \
            failures++;                                                                              \
        }                                                                                            \
    } while (0)

#define EXPECT(cond)                                                                                 \
    do {                                                                                             \
        if (!(cond)) {                                                                               \
            printf("FAIL line %d: %s\n", __LINE__, #cond);                                           \
            failures++;                                                                              \
        }                                                                                            \
    } while (0)

static int frees = 0;
static void count_free(void *p) {
    (void)p;
    frees++;
}
static void on_client(void *user_data, msse_client *client) {
    (void)user_data;
    (void)client;
}

int main(void) {
    msse_config cfg;
    msse_server *srv = NULL;
    msse_event ev;
    char id[8];
    static const char bad_utf8[] = {'a', (char)0xC3, (char)0x28, 'b'};
    const char *cors_null[1] = {NULL};
    int code;

    /* Static strings for every code, never NULL. */
    for (code = 5; code >= -20; code--) EXPECT(msse_strerror(code) != NULL);
    EXPECT(strcmp(msse_strerror(MSSE_OK), "not an error") == 0);
    EXPECT(strcmp(msse_strerror(12345), "unknown error") == 0);
    EXPECT(strcmp(msse_version(), MSSE_VERSION) == 0);
    EXPECT(msse_version_number() == MSSE_VERSION_NUMBER);

    /* NULL handles: harmless. */
    msse_config_init(NULL);
    msse_event_init(NULL);
    msse_server_destroy(NULL);
    msse_client_release(NULL);
    EXPECT(msse_client_retain(NULL) == NULL);
    EXPECT(msse_server_port(NULL) == 0);
    EXPECT(msse_server_errmsg(NULL) != NULL);
    EXPECT_CODE(msse_server_start(NULL), MSSE_EINVAL);
    EXPECT_CODE(msse_server_stop(NULL), MSSE_EINVAL);
    EXPECT_CODE(msse_publish(NULL, "news", NULL, NULL, "x", 1), MSSE_EINVAL);
    EXPECT_CODE(msse_client_send(NULL, NULL, NULL, "x", 1), MSSE_EINVAL);
    EXPECT_CODE(msse_client_send_comment(NULL, "x"), MSSE_EINVAL);
    EXPECT_CODE(msse_client_close(NULL), MSSE_EINVAL);
    EXPECT(msse_client_id(NULL) == 0);
    EXPECT(msse_client_is_open(NULL) == 0);
    EXPECT(strcmp(msse_client_path(NULL), "") == 0);
    EXPECT(strcmp(msse_request_method(NULL), "") == 0);
    EXPECT(msse_request_header(NULL, "Host") == NULL);
    EXPECT_CODE(msse_response_set_status(NULL, 200), MSSE_EINVAL);

    /* Bad configs: each failure still gives a handle whose message says why (like sqlite3_open). */
    EXPECT_CODE(msse_server_create(NULL, &srv), MSSE_EINVAL);
    EXPECT(srv == NULL);
    msse_config_init(&cfg);
    EXPECT(cfg.size == sizeof cfg);
    EXPECT(cfg.port == 8080 && strcmp(cfg.host, "127.0.0.1") == 0 && cfg.retry_ms == -1);
    EXPECT_CODE(msse_server_create(&cfg, NULL), MSSE_EINVAL);
#define EXPECT_CREATE_FAILS(code, reason)                                   \
    do {                                                                     \
        EXPECT_CODE(msse_server_create(&cfg, &srv), code);                   \
        EXPECT(srv != NULL && strstr(msse_server_errmsg(srv), reason) != NULL); \
        EXPECT_CODE(msse_server_start(srv), MSSE_ESTATE);                    \
        msse_server_destroy(srv);                                            \
        srv = NULL;                                                          \
    } while (0)
    cfg.size = 4;
    EXPECT_CREATE_FAILS(MSSE_EINVAL, "msse_config.size");
    msse_config_init(&cfg);
    cfg.retry_ms = -2;
    EXPECT_CREATE_FAILS(MSSE_EINVAL, "retryMilliseconds");
    msse_config_init(&cfg);
    cfg.host = NULL;
    EXPECT_CREATE_FAILS(MSSE_EINVAL, "host");
    msse_config_init(&cfg);
    cfg.thread_pool_size = 0;
    EXPECT_CREATE_FAILS(MSSE_EINVAL, "threadPoolSize");
    msse_config_init(&cfg);
    cfg.history_count = -1;
    EXPECT_CREATE_FAILS(MSSE_EINVAL, "historyCount");
    msse_config_init(&cfg);
    cfg.tls_cert_pem = "-----BEGIN CERTIFICATE-----";
    EXPECT_CREATE_FAILS(MSSE_EINVAL, "tls");
    msse_config_init(&cfg);
    cfg.cors_origin_count = 1;
    EXPECT_CREATE_FAILS(MSSE_EINVAL, "cors_origins");
    cfg.cors_origins = cors_null;
    EXPECT_CREATE_FAILS(MSSE_EINVAL, "cors_origins[0]");
    msse_config_init(&cfg);
    cfg.publish_token = "";
    EXPECT_CREATE_FAILS(MSSE_EINVAL, "publishToken");
    EXPECT(srv == NULL);

    /* A good server; port 0 = ephemeral. */
    msse_config_init(&cfg);
    cfg.port = 0;
    cfg.max_publish_bytes = 16;
    EXPECT_CODE(msse_server_create(&cfg, &srv), MSSE_OK);
    if (srv == NULL) return 1;
    EXPECT(strcmp(msse_server_errmsg(srv), "not an error") == 0);

    /* Publishing: channel, event, id, UTF-8, size, NULL. */
    EXPECT_CODE(msse_publish(srv, "news", NULL, NULL, "hello", 5), MSSE_OK);
    EXPECT_CODE(msse_publish(srv, "news", "", "", "", 0), MSSE_OK);
    EXPECT_CODE(msse_publish(srv, "news", NULL, NULL, NULL, 0), MSSE_OK);
    EXPECT_CODE(msse_publish(srv, NULL, NULL, NULL, "x", 1), MSSE_EINVAL);
    EXPECT_CODE(msse_publish(srv, "news", NULL, NULL, NULL, 3), MSSE_EINVAL);
    EXPECT_CODE(msse_publish(srv, "", NULL, NULL, "x", 1), MSSE_ECHANNEL);
    EXPECT_CODE(msse_publish(srv, "a/b", NULL, NULL, "x", 1), MSSE_ECHANNEL);
    EXPECT_CODE(msse_publish(srv, "sp ace", NULL, NULL, "x", 1), MSSE_ECHANNEL);
    EXPECT(strstr(msse_server_errmsg(srv), "channel") != NULL);
    EXPECT_CODE(msse_publish(srv, "news", "a\nb", NULL, "x", 1), MSSE_EEVENT);
    EXPECT_CODE(msse_publish(srv, "news", "a\rb", NULL, "x", 1), MSSE_EEVENT);
    EXPECT_CODE(msse_publish(srv, "news", NULL, "1\n2", "x", 1), MSSE_EID);
    EXPECT_CODE(msse_publish(srv, "news", NULL, "1\r2", "x", 1), MSSE_EID);
    EXPECT(strstr(msse_server_errmsg(srv), "CR") != NULL);
    EXPECT_CODE(msse_publish(srv, "news", NULL, NULL, bad_utf8, sizeof bad_utf8), MSSE_EUTF8);
    EXPECT_CODE(msse_publish(srv, "news", NULL, NULL, "\xff", 1), MSSE_EUTF8);
    EXPECT_CODE(msse_publish(srv, "news", "\xff", NULL, "x", 1), MSSE_EUTF8);
    EXPECT_CODE(msse_publish(srv, "news", NULL, NULL, "0123456789abcdefX", 17), MSSE_ETOOBIG);
    EXPECT_CODE(msse_publish(srv, "news", NULL, NULL, "a\0b", 3), MSSE_OK); /* data may hold NUL */

    msse_event_init(&ev);
    EXPECT(ev.size == sizeof ev && ev.retry_ms == -1);
    EXPECT_CODE(msse_publish_event(srv, "news", NULL, NULL, 0), MSSE_EINVAL);
    ev.data = "x";
    ev.len = 1;
    ev.retry_ms = -5;
    EXPECT_CODE(msse_publish_event(srv, "news", &ev, NULL, 0), MSSE_EINVAL);
    ev.retry_ms = 1000;
    ev.id = "1234567890";
    EXPECT_CODE(msse_publish_event(srv, "news", &ev, id, sizeof id), MSSE_ESPACE);
    EXPECT(id[0] == '\0');
    ev.id = "42";
    EXPECT_CODE(msse_publish_event(srv, "news", &ev, id, sizeof id), MSSE_OK);
    EXPECT(strcmp(id, "42") == 0);
    ev.size = 2;
    EXPECT_CODE(msse_publish_event(srv, "news", &ev, NULL, 0), MSSE_EINVAL);

    /* Registrations. */
    EXPECT_CODE(msse_server_add_route(srv, "GET", "/x", NULL, NULL, NULL), MSSE_EINVAL);
    EXPECT_CODE(msse_server_add_stream_route(srv, "talk", NULL, NULL, NULL), MSSE_EINVAL);
    EXPECT_CODE(msse_server_add_stream_route(srv, NULL, NULL, NULL, NULL), MSSE_EINVAL);
    EXPECT_CODE(msse_server_add_static_route(srv, "GET", "/", 99, NULL, "", 0), MSSE_EINVAL);
    EXPECT_CODE(msse_server_add_static_route(srv, "GET", "/", 200, "text/html\r\nX: y", "", 0), MSSE_EINVAL);
    EXPECT_CODE(msse_server_add_static_route(srv, "GET", "/", 200, NULL, NULL, 4), MSSE_EINVAL);
    EXPECT_CODE(msse_server_add_static_route(srv, "GET", "/", 200, "text/plain", "hi\n", 3), MSSE_OK);
    EXPECT_CODE(msse_server_on_connect(srv, NULL, NULL, NULL), MSSE_EINVAL);
    EXPECT_CODE(msse_server_on_connect(srv, on_client, &frees, count_free), MSSE_OK);
    EXPECT_CODE(msse_server_on_disconnect(srv, on_client, &frees, count_free), MSSE_OK);
    EXPECT_CODE(msse_server_set_authorizer(srv, NULL, &frees, count_free), MSSE_OK);
    EXPECT_CODE(msse_server_stats(srv, NULL), MSSE_EINVAL);

    /* Lifecycle: start twice, stop twice, publish after stop. */
    EXPECT_CODE(msse_server_start(srv), MSSE_OK);
    EXPECT(msse_server_port(srv) != 0);
    EXPECT_CODE(msse_server_start(srv), MSSE_ESTATE);
    EXPECT_CODE(msse_server_stop(srv), MSSE_OK);
    EXPECT_CODE(msse_server_stop(srv), MSSE_OK);
    EXPECT_CODE(msse_publish(srv, "news", NULL, NULL, "late", 4), MSSE_EUNAVAIL);
    EXPECT_CODE(msse_server_start(srv), MSSE_ESTATE);
    EXPECT(frees == 0);
    msse_server_destroy(srv);
    EXPECT(frees == 3);

    /* A port in use: MSSE_ESTART with a reason. */
    {
        msse_server *a = NULL, *b = NULL;
        msse_config_init(&cfg);
        cfg.port = 0;
        EXPECT_CODE(msse_server_create(&cfg, &a), MSSE_OK);
        EXPECT_CODE(msse_server_start(a), MSSE_OK);
        cfg.port = msse_server_port(a);
        EXPECT_CODE(msse_server_create(&cfg, &b), MSSE_OK);
        EXPECT_CODE(msse_server_start(b), MSSE_ESTART);
        EXPECT(strcmp(msse_server_errmsg(b), "not an error") != 0);
        msse_server_destroy(b);
        msse_server_destroy(a);
    }

    if (failures == 0) printf("ok\n");
    return failures == 0 ? 0 : 1;
}
