/*
 * strmap.h — strings to numbers by hash, for the control thread and the
 * config loader (never the request path): section titles, service names,
 * the id registries. Keys are not copied: a key must outlive its entry.
 */
#ifndef SL_STRMAP_H
#define SL_STRMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sl_strmap_entry {
	const char *key; /* NULL: an empty slot */
	uint64_t hash;
	uint32_t value;
};

struct sl_strmap {
	struct sl_strmap_entry *slots;
	size_t mask; /* slots - 1; 0 before the first put */
	size_t n;
};

/* An empty map is all zeros. Free its table (not its keys). */
void sl_strmap_free(struct sl_strmap *m);

/* Empty M, keeping its table. */
void sl_strmap_clear(struct sl_strmap *m);

/* Add KEY with VALUE, unless KEY is there: returns the value KEY has
 * (VALUE when added). Aborts on allocation failure. */
uint32_t sl_strmap_put(struct sl_strmap *m, const char *key, uint32_t value);

/* KEY's value into *VALUE; false when KEY is not there. */
bool sl_strmap_get(const struct sl_strmap *m, const char *key, uint32_t *value);

#endif
