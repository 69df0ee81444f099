/*
 * strmap.c — open addressing with linear probing, at most half full.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "conf/strmap.h"
#include "conf/xmalloc.h"

void
sl_strmap_free(struct sl_strmap *m)
{
	free(m->slots);
	memset(m, 0, sizeof *m);
}

void
sl_strmap_clear(struct sl_strmap *m)
{
	if (m->slots != NULL)
		memset(m->slots, 0, (m->mask + 1) * sizeof *m->slots);
	m->n = 0;
}

/* The slot of KEY (hash HASH) in M's table, or the empty one it would
 * take. */
static struct sl_strmap_entry *
find(const struct sl_strmap *m, const char *key, uint64_t hash)
{
	size_t i;

	for (i = hash & m->mask; m->slots[i].key != NULL;
	     i = (i + 1) & m->mask) {
		if (m->slots[i].hash == hash &&
		    strcmp(m->slots[i].key, key) == 0)
			break;
	}
	return &m->slots[i];
}

/* Twice the slots, every entry put again. */
static void
grow(struct sl_strmap *m)
{
	struct sl_strmap old = *m;
	size_t cap = m->slots == NULL ? 64 : 2 * (m->mask + 1), i;

	m->slots = sl_xcalloc(cap, sizeof *m->slots);
	m->mask = cap - 1;
	for (i = 0; old.slots != NULL && i <= old.mask; i++) {
		if (old.slots[i].key != NULL)
			*find(m, old.slots[i].key, old.slots[i].hash) =
			    old.slots[i];
	}
	free(old.slots);
}

uint32_t
sl_strmap_put(struct sl_strmap *m, const char *key, uint32_t value)
{
	uint64_t hash = XXH3_64bits(key, strlen(key));
	struct sl_strmap_entry *e;

	if (m->slots == NULL || 2 * (m->n + 1) > m->mask + 1)
		grow(m);
	e = find(m, key, hash);
	if (e->key != NULL)
		return e->value;
	e->key = key;
	e->hash = hash;
	e->value = value;
	m->n++;
	return value;
}

bool
sl_strmap_get(const struct sl_strmap *m, const char *key, uint32_t *value)
{
	const struct sl_strmap_entry *e;

	if (m->slots == NULL)
		return false;
	e = find(m, key, XXH3_64bits(key, strlen(key)));
	if (e->key == NULL)
		return false;
	*value = e->value;
	return true;
}
