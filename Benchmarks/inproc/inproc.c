/* Scenario 5, C API: a MicroSSE server in this process (libmicrosse, include/microsse.h), events
 * published by msse_publish (no HTTP publish) as fast as a bounded window allows, to the load
 * generator's subscribers. Same protocol and options as inproc.swift:
 *
 *   inproc-c --port P --subs N --events E [--size B] [--window W] [--channel NAME]
 *
 * Waits until N streams are open, publishes E events ("<g> 0 <g> <CLOCK_MONOTONIC ns>" padded
 * with x to B bytes), keeping at most W events per subscriber not yet handed to the sockets
 * (msse_stats.delivered), then serves until SIGINT and stops gracefully (exit 0). */
#define _GNU_SOURCE
#include <microsse.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long o_port = 8080, o_subs = 1000, o_events = 10000, o_size = 64, o_window = 128;
static const char *o_channel = "bench";
static msse_server *srv;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static msse_stats stats(void) {
    msse_stats s;
    memset(&s, 0, sizeof s);
    s.size = sizeof s;
    msse_server_stats(srv, &s);
    return s;
}

static void *publisher(void *arg) {
    (void)arg;
    while (stats().clients < (uint64_t)o_subs) usleep(1000);
    char *buf = malloc((size_t)o_size + 64);
    for (long g = 0; g < o_events; g++) {
        while ((uint64_t)g - stats().delivered / (uint64_t)o_subs >= (uint64_t)o_window) usleep(50);
        int n = snprintf(buf, 64, "%ld 0 %ld %llu ", g, g, (unsigned long long)now_ns());
        if (n < o_size) { memset(buf + n, 'x', (size_t)(o_size - n)); n = (int)o_size; }
        int rc = msse_publish(srv, o_channel, NULL, NULL, buf, (size_t)n);
        if (rc != MSSE_OK) { fprintf(stderr, "msse_publish: %s\n", msse_strerror(rc)); exit(1); }
    }
    free(buf);
    return NULL;
}

int main(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--port")) o_port = atol(v);
        else if (!strcmp(a, "--subs")) o_subs = atol(v);
        else if (!strcmp(a, "--events")) o_events = atol(v);
        else if (!strcmp(a, "--size")) o_size = atol(v);
        else if (!strcmp(a, "--window")) o_window = atol(v);
        else if (!strcmp(a, "--channel")) o_channel = v;
        else { fprintf(stderr, "unknown option %s\n", a); return 2; }
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* every thread inherits the mask; main waits below */

    msse_config cfg;
    msse_config_init(&cfg);
    cfg.port = (uint16_t)o_port;
    cfg.heartbeat_seconds = 0;
    cfg.max_clients = o_subs + 100 > 20000 ? (int)o_subs + 100 : 20000;
    cfg.connection_limit = cfg.max_clients + 240;
    if (msse_server_create(&cfg, &srv) != MSSE_OK) return 1;
    if (msse_server_start(srv) != MSSE_OK) {
        fprintf(stderr, "start: %s\n", msse_server_errmsg(srv));
        return 1;
    }
    printf("inproc-c on http://127.0.0.1:%u/events/%s\n", (unsigned)msse_server_port(srv), o_channel);
    fflush(stdout);
    pthread_t t;
    pthread_create(&t, NULL, publisher, NULL);
    pthread_detach(t);
    int sig;
    sigwait(&set, &sig);
    msse_server_stop(srv);
    msse_server_destroy(srv);
    return 0;
}
