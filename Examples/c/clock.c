/*
 * The classic libmicrohttpd SSE clock demo, in C on top of microsse.h.
 *
 *   GET /       a page with an EventSource on /talk and a "Stop Listening" button
 *   GET /talk   a private stream per connection: "data: new server event <time>" every
 *               INTERVAL seconds with an increasing id, starting at once (a ticker thread)
 *   GET /events/news   the built-in channel route; with -t/-n, THREADS threads publish EVENTS
 *               events each to "news" concurrently once the first subscriber has connected
 *
 * Usage: clock [-H HOST] [-p PORT] [-i INTERVAL] [-t THREADS -n EVENTS]
 * Prints "listening on http://HOST:PORT/" and runs until SIGINT or SIGTERM, then stops
 * cleanly (every stream ends) and exits 0.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <microsse.h>

static const char page[] =
    "<!DOCTYPE html>\n"
    "<html><head><meta charset=\"utf-8\"><title>MicroSSE clock (C)</title></head>\n"
    "<body>\n"
    "<h1>MicroSSE clock</h1>\n"
    "<p>Connection: <span id=\"state\">connecting</span></p>\n"
    "<button id=\"stop\">Stop Listening</button>\n"
    "<ul id=\"messages\"></ul>\n"
    "<script>\n"
    "  var source = new EventSource(\"/talk\");\n"
    "  var state = document.getElementById(\"state\");\n"
    "  source.addEventListener(\"open\", function () { state.textContent = \"open\"; });\n"
    "  source.addEventListener(\"error\", function () {\n"
    "    state.textContent = source.readyState === EventSource.CLOSED ? \"closed\" : \"reconnecting\";\n"
    "  });\n"
    "  source.addEventListener(\"message\", function (e) {\n"
    "    var li = document.createElement(\"li\");\n"
    "    li.textContent = e.lastEventId + \": \" + e.data;\n"
    "    document.getElementById(\"messages\").appendChild(li);\n"
    "  });\n"
    "  document.getElementById(\"stop\").addEventListener(\"click\", function () {\n"
    "    source.close(); state.textContent = \"stopped\";\n"
    "  });\n"
    "</script>\n"
    "</body></html>\n";

/* One /talk client: our own reference to its handle and its next id. */
struct talker {
    msse_client *client;
    unsigned long next_id;
    struct talker *next;
};

/* Shared between the callbacks (libmicrohttpd's thread), the ticker and main. */
struct app {
    msse_server *srv;
    pthread_mutex_t lock;
    pthread_cond_t changed;
    struct talker *talkers; /* guarded by lock */
    int subscribers;        /* /events subscribers connected so far; guarded by lock */
    int stopping;           /* guarded by lock */
    int interval;
};

static void send_time(struct talker *t) {
    char data[96], id[32];
    time_t now = time(NULL);
    struct tm parts;
    localtime_r(&now, &parts);
    strftime(data, sizeof data, "new server event %Y-%m-%d %H:%M:%S", &parts);
    snprintf(id, sizeof id, "%lu", t->next_id++);
    /* MSSE_ECLOSED just means the client went away; its disconnect callback follows. */
    (void)msse_client_send(t->client, NULL, id, data, strlen(data));
}

/* Stream route /talk (libmicrohttpd's thread): keep the client and send its first event. */
static void on_talk(void *user_data, const msse_request *req, msse_client *client) {
    struct app *app = user_data;
    struct talker *t = malloc(sizeof *t);
    (void)req;
    if (t == NULL) {
        msse_client_close(client);
        return;
    }
    t->client = msse_client_retain(client);
    t->next_id = 1;
    pthread_mutex_lock(&app->lock);
    send_time(t);
    t->next = app->talkers;
    app->talkers = t;
    pthread_mutex_unlock(&app->lock);
}

static void on_connect(void *user_data, msse_client *client) {
    struct app *app = user_data;
    if (strncmp(msse_client_path(client), "/events", 7) == 0) {
        pthread_mutex_lock(&app->lock);
        app->subscribers++;
        pthread_cond_broadcast(&app->changed);
        pthread_mutex_unlock(&app->lock);
    }
}

/* Disconnect (libmicrohttpd's thread or msse_server_stop's): forget a /talk client. */
static void on_disconnect(void *user_data, msse_client *client) {
    struct app *app = user_data;
    struct talker **p;
    pthread_mutex_lock(&app->lock);
    for (p = &app->talkers; *p != NULL; p = &(*p)->next) {
        if ((*p)->client == client) {
            struct talker *gone = *p;
            *p = gone->next;
            msse_client_release(gone->client);
            free(gone);
            break;
        }
    }
    pthread_mutex_unlock(&app->lock);
}

/* The ticker thread: every interval, each /talk client gets its next clock event. */
static void *ticker(void *arg) {
    struct app *app = arg;
    pthread_mutex_lock(&app->lock);
    while (!app->stopping) {
        struct timespec until;
        struct talker *t;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += app->interval;
        while (!app->stopping && pthread_cond_timedwait(&app->changed, &app->lock, &until) != ETIMEDOUT) {
        }
        if (app->stopping) break;
        for (t = app->talkers; t != NULL; t = t->next) send_time(t);
    }
    pthread_mutex_unlock(&app->lock);
    return NULL;
}

struct publisher {
    struct app *app;
    int thread;
    int events;
    int failures;
};

/* A publisher thread: EVENTS events to "news", in order. */
static void *publish_news(void *arg) {
    struct publisher *p = arg;
    int i;
    for (i = 0; i < p->events; i++) {
        char data[64];
        int n = snprintf(data, sizeof data, "thread %d seq %d", p->thread, i);
        int rc = msse_publish(p->app->srv, "news", "tick", NULL, data, (size_t)n);
        if (rc != MSSE_OK) {
            fprintf(stderr, "publish: %s (%s)\n", msse_strerror(rc), msse_server_errmsg(p->app->srv));
            p->failures++;
        }
    }
    return NULL;
}

static int run_publishers(struct app *app, int threads, int events) {
    pthread_t ids[64];
    struct publisher pubs[64];
    int i, failures = 0;
    pthread_mutex_lock(&app->lock);
    while (app->subscribers == 0 && !app->stopping) pthread_cond_wait(&app->changed, &app->lock);
    if (app->stopping) {
        pthread_mutex_unlock(&app->lock);
        return 0;
    }
    pthread_mutex_unlock(&app->lock);
    for (i = 0; i < threads; i++) {
        pubs[i].app = app;
        pubs[i].thread = i;
        pubs[i].events = events;
        pubs[i].failures = 0;
        pthread_create(&ids[i], NULL, publish_news, &pubs[i]);
    }
    for (i = 0; i < threads; i++) {
        pthread_join(ids[i], NULL);
        failures += pubs[i].failures;
    }
    printf("published %d events from %d threads\n", threads * events - failures, threads);
    fflush(stdout);
    return failures;
}

struct waiter {
    struct app *app;
    int threads, events, failures;
};

static void *publishers_main(void *arg) {
    struct waiter *w = arg;
    w->failures = run_publishers(w->app, w->threads, w->events);
    return NULL;
}

int main(int argc, char **argv) {
    struct app app;
    msse_config cfg;
    sigset_t signals;
    pthread_t tick, pub;
    struct waiter w;
    const char *host = "127.0.0.1";
    int port = 8080, threads = 0, events = 0, opt, sig, rc;

    app.interval = 5;
    while ((opt = getopt(argc, argv, "H:p:i:t:n:")) != -1) {
        switch (opt) {
        case 'H': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'i': app.interval = atoi(optarg); break;
        case 't': threads = atoi(optarg); break;
        case 'n': events = atoi(optarg); break;
        default:
            fprintf(stderr, "usage: %s [-H HOST] [-p PORT] [-i INTERVAL] [-t THREADS -n EVENTS]\n", argv[0]);
            return 2;
        }
    }
    if (app.interval < 1 || port < 0 || port > 65535 || threads < 0 || threads > 64 || events < 0) {
        fprintf(stderr, "%s: bad arguments\n", argv[0]);
        return 2;
    }
    app.talkers = NULL;
    app.subscribers = 0;
    app.stopping = 0;
    pthread_mutex_init(&app.lock, NULL);
    pthread_cond_init(&app.changed, NULL);

    /* Every thread started from here on (ours and the library's) leaves these to sigwait. */
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);

    msse_config_init(&cfg);
    cfg.host = host;
    cfg.port = (uint16_t)port;
    if ((rc = msse_server_create(&cfg, &app.srv)) != MSSE_OK) {
        fprintf(stderr, "msse_server_create: %s\n", msse_strerror(rc));
        return 1;
    }
    msse_server_add_static_route(app.srv, "GET", "/", 200, "text/html; charset=utf-8", page, sizeof page - 1);
    msse_server_add_stream_route(app.srv, "/talk", on_talk, &app, NULL);
    msse_server_on_connect(app.srv, on_connect, &app, NULL);
    msse_server_on_disconnect(app.srv, on_disconnect, &app, NULL);
    if ((rc = msse_server_start(app.srv)) != MSSE_OK) {
        fprintf(stderr, "msse_server_start: %s: %s\n", msse_strerror(rc), msse_server_errmsg(app.srv));
        msse_server_destroy(app.srv);
        return 1;
    }
    printf("listening on http://%s:%u/\n", host, (unsigned)msse_server_port(app.srv));
    fflush(stdout);

    pthread_create(&tick, NULL, ticker, &app);
    w.app = &app;
    w.threads = threads;
    w.events = events;
    w.failures = 0;
    if (threads > 0) pthread_create(&pub, NULL, publishers_main, &w);

    sigwait(&signals, &sig);

    pthread_mutex_lock(&app.lock);
    app.stopping = 1;
    pthread_cond_broadcast(&app.changed);
    pthread_mutex_unlock(&app.lock);
    pthread_join(tick, NULL);
    if (threads > 0) pthread_join(pub, NULL);

    msse_server_stop(app.srv); /* ends every stream; disconnect callbacks free the talkers */
    msse_server_destroy(app.srv);
    while (app.talkers != NULL) { /* only if a stream outlived stop's drain */
        struct talker *t = app.talkers;
        app.talkers = t->next;
        msse_client_release(t->client);
        free(t);
    }
    pthread_cond_destroy(&app.changed);
    pthread_mutex_destroy(&app.lock);
    fprintf(stderr, "stopped\n");
    return w.failures == 0 ? 0 : 1;
}
