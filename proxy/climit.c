/*
 * climit.c — client connections per address (see climit.h).
 *
 * Each stripe is an open-addressing table with linear probing, grown to
 * keep it at most half full; an entry goes when its count reaches zero
 * (backward-shift deletion, so no tombstones). The hash is seeded at
 * random, once per process: addresses are chosen by clients, and a known
 * hash would let one pile its addresses onto one chain.
 */
#include "config.h"

#include <sys/random.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "proxy/climit.h"

#define STRIPE_BITS 4
#define NSTRIPES    (1u << STRIPE_BITS)
#define MIN_CAP     64u

struct entry {
	uint8_t key[16];
	uint32_t count; /* 0: a free slot */
};

struct stripe {
	pthread_mutex_t lock;
	struct entry *slots;
	uint32_t cap; /* a power of two, or 0 before the first entry */
	uint32_t n;
};

static struct stripe stripes[NSTRIPES] = {
#define S                                                                      \
	{                                                                      \
		PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0                          \
	}
    S,
    S,
    S,
    S,
    S,
    S,
    S,
    S,
    S,
    S,
    S,
    S,
    S,
    S,
    S,
    S,
#undef S
};
static uint64_t seed;
static pthread_once_t seed_once = PTHREAD_ONCE_INIT;

static void
seed_init(void)
{
	if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != sizeof seed)
		seed = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&seed;
}

/* The key of ADDR: an IPv4 address as IPv4-mapped IPv6, an IPv6 one by
 * its /64. */
static void
key_of(const struct sockaddr *addr, uint8_t key[16])
{
	memset(key, 0, 16);
	if (addr->sa_family == AF_INET) {
		key[10] = key[11] = 0xff;
		memcpy(key + 12,
		    &((const struct sockaddr_in *)(const void *)addr)->sin_addr,
		    4);
	} else if (addr->sa_family == AF_INET6) {
		const struct in6_addr *a6 =
		    &((const struct sockaddr_in6 *)(const void *)addr)
		         ->sin6_addr;

		memcpy(key, a6->s6_addr, IN6_IS_ADDR_V4MAPPED(a6) ? 16 : 8);
	}
}

static uint64_t
hash_of(const uint8_t key[16])
{
	pthread_once(&seed_once, seed_init);
	return XXH3_64bits_withSeed(key, 16, seed);
}

static struct stripe *
stripe_of(uint64_t h)
{
	return &stripes[h >> (64 - STRIPE_BITS)];
}

/* The slot holding KEY, or the free slot where it would go. */
static struct entry *
find(struct stripe *s, const uint8_t key[16], uint64_t h)
{
	uint32_t i = (uint32_t)h & (s->cap - 1);

	while (s->slots[i].count != 0 && memcmp(s->slots[i].key, key, 16) != 0)
		i = (i + 1) & (s->cap - 1);
	return &s->slots[i];
}

/* Twice the room (or the first MIN_CAP slots); false without memory. */
static bool
grow(struct stripe *s)
{
	struct stripe bigger = {.cap = s->cap ? s->cap * 2 : MIN_CAP};
	uint32_t i;

	bigger.slots = calloc(bigger.cap, sizeof *bigger.slots);
	if (bigger.slots == NULL)
		return false;
	for (i = 0; i < s->cap; i++) {
		if (s->slots[i].count != 0)
			*find(&bigger, s->slots[i].key,
			    hash_of(s->slots[i].key)) = s->slots[i];
	}
	free(s->slots);
	s->slots = bigger.slots;
	s->cap = bigger.cap;
	return true;
}

int
sl_climit_open(const struct sockaddr *addr, uint32_t limit)
{
	uint8_t key[16];
	uint64_t h;
	struct stripe *s;
	struct entry *e;
	int counted = -1;

	key_of(addr, key);
	h = hash_of(key);
	s = stripe_of(h);
	pthread_mutex_lock(&s->lock);
	if ((s->n + 1) * 2 > s->cap && !grow(s))
		goto out;
	e = find(s, key, h);
	counted = 0;
	if (e->count >= limit)
		goto out;
	if (e->count == 0) {
		memcpy(e->key, key, 16);
		s->n++;
	}
	e->count++;
	counted = 1;
out:
	pthread_mutex_unlock(&s->lock);
	return counted;
}

/* Take the free slot at HOLE out of its probe chains: move back every
 * entry after it that could live there. */
static void
close_gap(struct stripe *s, uint32_t hole)
{
	uint32_t mask = s->cap - 1, i = hole, home;

	for (;;) {
		i = (i + 1) & mask;
		if (s->slots[i].count == 0)
			return;
		home = (uint32_t)hash_of(s->slots[i].key) & mask;
		/* Movable when HOLE lies on its way from HOME to I. */
		if (((i - home) & mask) >= ((i - hole) & mask)) {
			s->slots[hole] = s->slots[i];
			s->slots[i].count = 0;
			hole = i;
		}
	}
}

void
sl_climit_close(const struct sockaddr *addr)
{
	uint8_t key[16];
	uint64_t h;
	struct stripe *s;
	struct entry *e;

	key_of(addr, key);
	h = hash_of(key);
	s = stripe_of(h);
	pthread_mutex_lock(&s->lock);
	if (s->cap > 0) {
		e = find(s, key, h);
		if (e->count > 0 && --e->count == 0) {
			s->n--;
			close_gap(s, (uint32_t)(e - s->slots));
		}
	}
	pthread_mutex_unlock(&s->lock);
}

uint32_t
sl_climit_count(const struct sockaddr *addr)
{
	uint8_t key[16];
	uint64_t h;
	struct stripe *s;
	uint32_t n = 0;

	key_of(addr, key);
	h = hash_of(key);
	s = stripe_of(h);
	pthread_mutex_lock(&s->lock);
	if (s->cap > 0)
		n = find(s, key, h)->count;
	pthread_mutex_unlock(&s->lock);
	return n;
}

void
sl_climit_free(void)
{
	size_t i;

	for (i = 0; i < NSTRIPES; i++) {
		pthread_mutex_lock(&stripes[i].lock);
		free(stripes[i].slots);
		stripes[i].slots = NULL;
		stripes[i].cap = stripes[i].n = 0;
		pthread_mutex_unlock(&stripes[i].lock);
	}
}
