/*
 * sluicectl.h — the pieces of sluicectl, the control socket's command-line
 * client, shared between its files:
 *
 *   sluicectl.c        options, the command table, help, dispatch
 *   sluicectl_conn.c   one connection to the socket: line out, line in
 *   sluicectl_print.c  readable output for each reply shape
 *   sluicectl_watch.c  the client-side commands `watch` and `rollout wait`
 *
 * Exit codes are the client's contract with scripts (SL_CLI_*). Messages
 * for the user go to stderr as "sluicectl: ..."; replies go to stdout.
 */
#ifndef SL_SLUICECTL_H
#define SL_SLUICECTL_H

#include <signal.h>
#include <stdbool.h>

#include <jansson.h>

/* Exit codes. */
#define SL_CLI_OK      0 /* "ok":true (rollout wait: promoted) */
#define SL_CLI_REFUSED 1 /* "ok":false (rollout wait: reverted, aborted) */
#define SL_CLI_USAGE   2 /* bad command line (rollout wait: timed out) */
#define SL_CLI_TROUBLE 3 /* cannot connect, no reply, reply not JSON */

#define SL_CLI_SOCKET_DEFAULT "/run/sluice/control.sock"

struct sl_cli_conn;

/* The client's settings and its one connection (opened on first use). */
struct sl_cli {
	const char *socket;
	const char *owner; /* NULL: the daemon uses uid:<uid> */
	double timeout;    /* seconds per reply; 0: no limit */
	bool json;
	struct sl_cli_conn *conn;
};

/*
 * Set by the SIGINT/SIGTERM and SIGWINCH handlers that `watch` installs.
 * Any wait in sluicectl_conn.c returns early (errno EINTR) once
 * sl_cli_stop is set.
 */
extern volatile sig_atomic_t sl_cli_stop;
extern volatile sig_atomic_t sl_cli_winch;

/* Print "sluicectl: MESSAGE" to stderr. */
void sl_cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Call FN (NULL: nothing) before each message, e.g. to restore the tty. */
void sl_cli_set_warn_hook(void (*fn)(void));

/*
 * sluicectl_conn.c. Waits use ppoll(2) with *sigmask (NULL: the current
 * mask), so a caller that blocks its signals and passes the unblocked mask
 * here never misses one between a check and a wait.
 */
void sl_cli_set_waitmask(const sigset_t *sigmask);

/*
 * Connect to the Unix socket at PATH within TIMEOUT seconds (0: no limit).
 * Returns a connection the caller frees with sl_cli_conn_free(), or NULL
 * with a reason in *errp (heap, caller frees).
 */
struct sl_cli_conn *sl_cli_conn_open(
    const char *path, double timeout, char **errp);

/*
 * True if PATH now names another socket file than the one CONN connected
 * to: another sluice took the path over (`--takeover`) while the one CONN
 * reaches still runs. False when PATH is missing or unknown.
 */
bool sl_cli_conn_replaced(const struct sl_cli_conn *conn, const char *path);

/* Close and free a connection; NULL is ignored. */
void sl_cli_conn_free(struct sl_cli_conn *conn);

/*
 * Send LINE plus a newline, then read one reply line within TIMEOUT
 * seconds. Returns 0 and the line without its newline (and without a CR
 * before it) in *replyp (heap, caller frees), or -1 with a reason in *errp
 * (heap, caller frees); errno is then ETIMEDOUT, EINTR (sl_cli_stop was
 * set) or another error.
 */
int sl_cli_conn_exchange(struct sl_cli_conn *conn, const char *line,
    double timeout, char **replyp, char **errp);

/* Why sl_cli_try() failed. */
enum sl_cli_fail {
	SL_CLI_FAIL_CONNECT, /* could not connect to the socket */
	SL_CLI_FAIL_LOST,    /* the connection closed before a whole reply */
	SL_CLI_FAIL_BUSY,    /* refused at once: "too many control clients" */
	SL_CLI_FAIL_OTHER,   /* no reply in time, interrupted, a bad reply */
};

/*
 * Send COMMAND (prefixed with "as OWNER " when cli->owner is set) on the
 * client's connection, opening it if need be, and parse the reply.
 * Returns 0 with the reply in *replyp (a JSON object holding a boolean
 * "ok", which may be false; caller json_decref()s it) and, if rawp is not
 * NULL, the raw reply line in *rawp (heap, caller frees). Returns -1 when
 * the daemon cannot be reached or the reply is not a valid reply, with
 * the reason in *errp (heap, caller frees; it names the socket) and its
 * kind in *failp. A new connection whose first reply is the daemon's
 * "too many control clients" (every client slot taken, or this user's
 * share: it says so before reading any command) is SL_CLI_FAIL_BUSY, not
 * a reply: the command was not run, and slots come free. After a failed
 * exchange the connection is closed, so the next call connects again.
 */
int sl_cli_try(struct sl_cli *cli, const char *command, json_t **replyp,
    char **rawp, char **errp, enum sl_cli_fail *failp);

/*
 * sl_cli_try() that prints the reason of a failure (unless the exchange
 * was cut short because sl_cli_stop is set) instead of returning it.
 */
int sl_cli_call(
    struct sl_cli *cli, const char *command, json_t **replyp, char **rawp);

/* True if REPLY says "ok":true. */
bool sl_cli_reply_ok(const json_t *reply);

/* The "error" of a refused REPLY, or a generic text; never NULL. */
const char *sl_cli_reply_error(const json_t *reply);

/*
 * sluicectl_print.c: one printer per reply shape. Each takes the reply
 * (ok is true) and the command's words, prints to stdout and returns 0,
 * or returns -1 without printing when the reply does not have the shape
 * it knows; the caller then pretty-prints the JSON.
 */
typedef int sl_cli_printer(json_t *reply, char **words, int nwords);

sl_cli_printer sl_cli_print_help, sl_cli_print_services, sl_cli_print_service,
    sl_cli_print_stats, sl_cli_print_events, sl_cli_print_rollout,
    sl_cli_print_weights, sl_cli_print_switch, sl_cli_print_server,
    sl_cli_print_rollout_change, sl_cli_print_lock, sl_cli_print_reset,
    sl_cli_print_generic;

/* Print REPLY as indented JSON. */
void sl_cli_print_json(const json_t *reply);

/*
 * "step 3/5 at 25.00%" for a rollout object ("step" counts from one), "at
 * 100.00% after step 4/5" once it is over. Heap, caller frees.
 */
char *sl_cli_rollout_step(const json_t *rollout);

/* Is a rollout in STATE (NULL: unknown) over? */
bool sl_cli_rollout_over(const char *state);

/* The string field KEY of object O, or DEF if there is none. */
const char *sl_cli_str(const json_t *o, const char *key, const char *def);

/*
 * Number V with DECIMALS decimals (-1: %g) and SUFFIX, or "-" when V is
 * not a number. Heap, caller frees.
 */
char *sl_cli_fmt_num(const json_t *v, int decimals, const char *suffix);

/*
 * sluicectl_watch.c: the client-side commands. Each takes the words after
 * its own command words and returns an exit code.
 */
int sl_cli_watch(struct sl_cli *cli, char **args, int nargs);
int sl_cli_rollout_wait(struct sl_cli *cli, char **args, int nargs);

#endif
