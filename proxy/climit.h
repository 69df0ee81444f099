/*
 * climit.h — client connections per address, for max_connections_per_client.
 *
 * One count per client address, process-wide (every worker's connections
 * together), kept only while the address has a connection open. An IPv4
 * address (also one mapped into IPv6) is its own key; an IPv6 address
 * counts with the rest of its /64, which one host gets whole and can
 * change within at will. Thread-safe: the table is split into stripes,
 * each behind its own mutex, taken once as a connection opens and once as
 * it closes, never per request.
 */
#ifndef SL_CLIMIT_H
#define SL_CLIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct sockaddr;

/* Count a connection from ADDR unless its address already has LIMIT
 * open: 1 when counted (sl_climit_close must follow), 0 when the address
 * is at the limit, -1 when it cannot be counted for want of memory (let
 * it through: a client under its limit is not refused for that). */
int sl_climit_open(const struct sockaddr *addr, uint32_t limit);

/* A counted connection from ADDR has closed. */
void sl_climit_close(const struct sockaddr *addr);

/* Connections counted for ADDR now (for tests). */
uint32_t sl_climit_count(const struct sockaddr *addr);

/* Free the table (at exit, once no worker runs). */
void sl_climit_free(void);

#endif
