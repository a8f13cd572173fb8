/* Connections per client address, for the per-address limit (see msse_shim_tracker_create). */
#include "shim_internal.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>

/* An open-addressing table (linear probing, deletion by backward shift) of the addresses with
 * open connections. Its capacity is fixed at creation to at least twice the daemon's connection
 * limit, so it never fills (each open connection holds at most one entry) and never allocates
 * after creation, whatever clients do. */
typedef struct {
    unsigned char address[16];
    unsigned int count; /* 0 = empty slot */
} msse_shim_peer;

struct msse_shim_peers {
    size_t mask; /* capacity - 1, capacity a power of two */
    uint64_t seed; /* random per table: clients cannot pick addresses that collide */
    msse_shim_peer *slots;
};

msse_shim_peers *msse_shim_peers_create(unsigned int connection_limit) {
    size_t capacity = 64;
    while (capacity < (size_t)connection_limit * 2) capacity *= 2;
    msse_shim_peers *p = calloc(1, sizeof *p);
    if (p == NULL) return NULL;
    p->slots = calloc(capacity, sizeof *p->slots);
    if (p->slots == NULL) {
        free(p);
        return NULL;
    }
    p->mask = capacity - 1;
    if (getrandom(&p->seed, sizeof p->seed, 0) != (ssize_t)sizeof p->seed) p->seed = (uint64_t)(uintptr_t)p;
    return p;
}

void msse_shim_peers_destroy(msse_shim_peers *p) {
    if (p == NULL) return;
    free(p->slots);
    free(p);
}

int msse_shim_address_key(const struct sockaddr *sa, unsigned char key[16]) {
    if (sa == NULL) return 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)sa;
        memset(key, 0, 10);
        key[10] = key[11] = 0xff; /* ::ffff:a.b.c.d, as a dual-stack socket reports it */
        memcpy(key + 12, &v4->sin_addr, 4);
        return 1;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        return 1;
    }
    return 0;
}

static size_t msse_shim_peer_hash(const msse_shim_peers *p, const unsigned char key[16]) {
    uint64_t h = 1469598103934665603ull ^ p->seed; /* FNV-1a, seeded */
    for (int i = 0; i < 16; i++) h = (h ^ key[i]) * 1099511628211ull;
    return (size_t)(h ^ (h >> 29));
}

/* The slot holding `key`, or the empty slot where it would go. */
static size_t msse_shim_peer_find(const msse_shim_peers *p, const unsigned char key[16]) {
    size_t i = msse_shim_peer_hash(p, key) & p->mask;
    while (p->slots[i].count != 0 && memcmp(p->slots[i].address, key, 16) != 0) i = (i + 1) & p->mask;
    return i;
}

unsigned int msse_shim_peers_add(msse_shim_peers *p, const unsigned char key[16]) {
    size_t i = msse_shim_peer_find(p, key);
    if (p->slots[i].count == 0) memcpy(p->slots[i].address, key, 16);
    return ++p->slots[i].count;
}

void msse_shim_peers_remove(msse_shim_peers *p, const unsigned char key[16]) {
    size_t i = msse_shim_peer_find(p, key);
    if (p->slots[i].count == 0 || --p->slots[i].count > 0) return;
    /* Emptied: shift back the entries after it that probed past it, so lookups stay correct. */
    size_t hole = i;
    for (size_t j = (i + 1) & p->mask; p->slots[j].count != 0; j = (j + 1) & p->mask) {
        size_t home = msse_shim_peer_hash(p, p->slots[j].address) & p->mask;
        /* Entry j may move to the hole when its home is not in the cyclic range (hole, j]. */
        int home_in_range = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!home_in_range) {
            p->slots[hole] = p->slots[j];
            p->slots[j].count = 0;
            hole = j;
        }
    }
}
