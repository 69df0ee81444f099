/*
 * test_climit.c — proxy/climit.c, the per-address connection counts of
 * max_connections_per_client: the limit holds per address and frees as
 * connections close, IPv4 and IPv4-mapped IPv6 are one client, an IPv6
 * client is its /64, and the table stays exact through growth, deletion
 * in any order and threads counting at once.
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/climit.h"

static struct sockaddr_in
v4(const char *text)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(80)};

	assert_int_equal(inet_pton(AF_INET, text, &a.sin_addr), 1);
	return a;
}

static struct sockaddr_in6
v6(const char *text)
{
	struct sockaddr_in6 a = {.sin6_family = AF_INET6};

	assert_int_equal(inet_pton(AF_INET6, text, &a.sin6_addr), 1);
	return a;
}

#define SA(a) ((const struct sockaddr *)(const void *)&(a))

static void
test_limit_per_address(void **state)
{
	struct sockaddr_in a = v4("192.0.2.1"), b = v4("192.0.2.2");
	int i;

	(void)state;
	for (i = 0; i < 3; i++)
		assert_true(sl_climit_open(SA(a), 3));
	assert_false(sl_climit_open(SA(a), 3)); /* the fourth: refused */
	assert_int_equal(sl_climit_count(SA(a)), 3);
	assert_true(sl_climit_open(SA(b), 3)); /* another client: its own */
	/* A reload that raises the limit lets the address open more. */
	assert_true(sl_climit_open(SA(a), 4));
	assert_false(sl_climit_open(SA(a), 4));
	sl_climit_close(SA(a));
	assert_true(sl_climit_open(SA(a), 4)); /* a slot freed is a slot */
	for (i = 0; i < 4; i++)
		sl_climit_close(SA(a));
	sl_climit_close(SA(b));
	assert_int_equal(sl_climit_count(SA(a)), 0);
	assert_int_equal(sl_climit_count(SA(b)), 0);
	/* Closing what is not counted changes nothing (and never wraps). */
	sl_climit_close(SA(a));
	assert_int_equal(sl_climit_count(SA(a)), 0);
	assert_true(sl_climit_open(SA(a), 1));
	sl_climit_close(SA(a));
}

static void
test_address_families(void **state)
{
	struct sockaddr_in a = v4("198.51.100.7");
	struct sockaddr_in6 mapped = v6("::ffff:198.51.100.7");
	struct sockaddr_in6 h1 = v6("2001:db8:1:2::1");
	struct sockaddr_in6 h2 = v6("2001:db8:1:2:ffff:ffff:ffff:ffff");
	struct sockaddr_in6 other = v6("2001:db8:1:3::1");

	(void)state;
	/* The same IPv4 client on a dual-stack listener is one client. */
	assert_true(sl_climit_open(SA(a), 2));
	assert_true(sl_climit_open(SA(mapped), 2));
	assert_false(sl_climit_open(SA(a), 2));
	assert_int_equal(sl_climit_count(SA(mapped)), 2);
	sl_climit_close(SA(a));
	sl_climit_close(SA(mapped));
	/* An IPv6 host cannot get round the limit by changing its address
	 * within its /64; the next /64 is another client. */
	assert_true(sl_climit_open(SA(h1), 2));
	assert_true(sl_climit_open(SA(h2), 2));
	assert_false(sl_climit_open(SA(h1), 2));
	assert_true(sl_climit_open(SA(other), 2));
	sl_climit_close(SA(h1));
	sl_climit_close(SA(h2));
	sl_climit_close(SA(other));
	assert_int_equal(sl_climit_count(SA(h2)), 0);
}

#define MANY 20000

static struct sockaddr_in
nth(uint32_t i)
{
	struct sockaddr_in a = {.sin_family = AF_INET};

	a.sin_addr.s_addr = htonl(0x0a000000u + i * 7919u);
	return a;
}

/* Many addresses: the table grows and sheds entries in any order, and
 * each count stays exact (a lost entry would let an address past its
 * limit, a stale one would refuse a client that has nothing open). */
static void
test_many_addresses(void **state)
{
	static uint32_t order[MANY], left[MANY];
	uint32_t i, j, t;
	uint64_t rng = 88172645463325252ull;
	struct sockaddr_in a;

	(void)state;
	for (i = 0; i < MANY; i++) {
		a = nth(i);
		left[i] = 1 + i % 3;
		for (j = 0; j < left[i]; j++)
			assert_true(sl_climit_open(SA(a), 3));
		order[i] = i;
	}
	for (i = 0; i < MANY; i++) {
		a = nth(i);
		assert_int_equal(sl_climit_count(SA(a)), left[i]);
		assert_int_equal(sl_climit_open(SA(a), 3), left[i] < 3);
		if (left[i] < 3)
			left[i]++;
	}
	for (i = MANY - 1; i > 0; i--) { /* shuffle the closing order */
		rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
		j = (uint32_t)(rng % (i + 1));
		t = order[i], order[i] = order[j], order[j] = t;
	}
	for (i = 0; i < MANY; i++) {
		uint32_t k = order[i];

		a = nth(k);
		sl_climit_close(SA(a));
		left[k]--;
		if (i % 97 == 0) { /* and a sample of the others is intact */
			for (j = 0; j < MANY; j += 1009) {
				struct sockaddr_in b = nth(j);

				assert_int_equal(
				    sl_climit_count(SA(b)), left[j]);
			}
		}
	}
	for (i = 0; i < MANY; i++) {
		a = nth(i);
		while (left[i] > 0) {
			sl_climit_close(SA(a));
			left[i]--;
		}
		assert_int_equal(sl_climit_count(SA(a)), 0);
	}
}

#define THREADS 4
#define ROUNDS  20000

static void *
churn(void *arg)
{
	uint32_t base = (uint32_t)(uintptr_t)arg, i;
	struct sockaddr_in shared = v4("203.0.113.9"), own;
	int refused = 0;

	for (i = 0; i < ROUNDS; i++) {
		own = nth(base * ROUNDS + i % 500);
		if (!sl_climit_open(SA(own), 1000))
			refused++;
		if (sl_climit_open(SA(shared), 1000000))
			sl_climit_close(SA(shared));
		else
			refused++;
		sl_climit_close(SA(own));
	}
	return (void *)(intptr_t)refused;
}

/* Workers opening and closing at once lose no count. */
static void
test_threads(void **state)
{
	pthread_t th[THREADS];
	struct sockaddr_in shared = v4("203.0.113.9");
	void *ret;
	uintptr_t i;

	(void)state;
	for (i = 0; i < THREADS; i++)
		assert_int_equal(
		    pthread_create(&th[i], NULL, churn, (void *)(i + 1)), 0);
	for (i = 0; i < THREADS; i++) {
		assert_int_equal(pthread_join(th[i], &ret), 0);
		assert_null(ret);
	}
	assert_int_equal(sl_climit_count(SA(shared)), 0);
	for (i = 0; i < 500; i++) {
		struct sockaddr_in a = nth((uint32_t)(ROUNDS + i));

		assert_int_equal(sl_climit_count(SA(a)), 0);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_limit_per_address),
	    cmocka_unit_test(test_address_families),
	    cmocka_unit_test(test_many_addresses),
	    cmocka_unit_test(test_threads),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);

	sl_climit_free();
	return failed;
}
