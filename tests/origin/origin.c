/*
 * tests/origin/origin.c: sl-origin, the HTTP/1.1 origin server used by
 * sluice's integration tests, demo and benchmarks.
 *
 * This file owns the command line (one option table drives parsing,
 * validation and --help, through tests/tool/cliopt.c), the worker
 * threads (each with its own event_base and SO_REUSEPORT listener, like
 * sluice's own workers) and shutdown: the main thread waits for SIGTERM/SIGINT
 * with sigwait(), wakes every worker through a pipe, joins them and exits 0.
 * Per-connection behaviour is in origin_conn.c.
 */
#include "config.h"

#include <sys/socket.h>
#include <sys/types.h>
#include <netdb.h>
#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "tests/origin/origin.h"
#include "tests/tool/cliopt.h"

#define MAX_THREADS 256
#define MAX_NAME    64

struct sl_origin_opts sl_origin_opts = {
    .threads = 1,
    .error_status = 500,
    .cold_latency_ms = 100,
};
struct sl_origin_stats sl_origin_stats;
struct sl_origin_worker *sl_origin_workers;
unsigned sl_origin_nworkers;

#define O (&sl_origin_opts)
static const struct cli_opt opt_table[] = {
    {"listen", CLI_STR, &O->listen, 0, 0, "HOST:PORT",
        "address to listen on (required; port 0 picks one)"},
    {"name", CLI_STR, &O->name, 0, 0, "NAME",
        "name sent in X-Origin and the default body (required)"},
    {"threads", CLI_UINT, &O->threads, 1, MAX_THREADS, "N",
        "worker threads, one SO_REUSEPORT listener each (1)"},
    {"latency", CLI_DOUBLE, &O->latency_ms, 0, 3600000, "MS",
        "delay before each response (0)"},
    {"jitter", CLI_DOUBLE, &O->jitter_ms, 0, 3600000, "MS",
        "add a uniform random 0..MS to --latency (0)"},
    {"cold", CLI_DOUBLE, &O->cold_ms, 0, 3600000, "MS",
        "warming up: for MS after the first request, answers take "
        "--cold-latency more (0)"},
    {"cold-latency", CLI_DOUBLE, &O->cold_latency_ms, 0, 3600000, "MS",
        "extra delay while --cold lasts (100)"},
    {"error-rate", CLI_DOUBLE, &O->error_rate, 0, 1, "F",
        "fraction of requests answered with --error-status (0)"},
    {"error-status", CLI_UINT, &O->error_status, 200, 599, "CODE",
        "status of injected errors (500)"},
    {"error-every", CLI_UINT, &O->error_every, 0, 1e18, "N",
        "every Nth request of the process gets --error-status"},
    {"size", CLI_UINT, &O->size, 0, 1e18, "BYTES",
        "response body size (default: body is \"NAME\\n\")"},
    {"chunked", CLI_FLAG, &O->chunked, 1, 0, NULL,
        "send bodies chunked instead of with Content-Length"},
    {"echo", CLI_FLAG, &O->echo, 1, 0, NULL,
        "answer with the raw request head and body"},
    {"seed", CLI_UINT, &O->seed, 0, 1e19, "N",
        "random seed (default: time-based)"},
    {"pidfile", CLI_STR, &O->pidfile, 0, 0, "FILE", "write the pid here"},
    {"quiet", CLI_FLAG, &O->verbose, 0, 0, NULL,
        "no per-request log (default)"},
    {"verbose", CLI_FLAG, &O->verbose, 1, 0, NULL,
        "log one line per request to stderr"},
    {"help", CLI_FLAG, NULL, 0, 0, NULL, "show this help"},
};
#undef O
#define NOPTS (sizeof(opt_table) / sizeof(opt_table[0]))

static bool opt_given[NOPTS];
static char *listen_host; /* NULL: any address */
static char *listen_port;

/* Looks an option up by name; true if it was on the command line. */
static bool
given(const char *name)
{
	size_t i;

	for (i = 0; i < NOPTS; i++) {
		if (strcmp(opt_table[i].name, name) == 0)
			return opt_given[i];
	}
	return false;
}

/* Splits HOST:PORT ([V6]:PORT too) into listen_host and listen_port. */
static void
listen_split(const char *s)
{
	const char *colon, *host = s;
	size_t hlen;

	if (*s == '[') {
		colon = strchr(s, ']');
		if (colon == NULL || colon[1] != ':')
			cli_bad_usage("--listen: '%s' is not [HOST]:PORT", s);
		host = s + 1;
		hlen = colon - host;
		colon++;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			cli_bad_usage("--listen: '%s' is not HOST:PORT", s);
		hlen = colon - s;
	}
	if (colon[1] == '\0' ||
	    strspn(colon + 1, "0123456789") != strlen(colon + 1) ||
	    atol(colon + 1) > 65535)
		cli_bad_usage("--listen: bad port in '%s'", s);
	listen_port = strdup(colon + 1);
	if (hlen > 0 && !(hlen == 1 && *host == '*'))
		listen_host = strndup(host, hlen);
}

/* Parses and validates the command line into sl_origin_opts. */
static void
opts_parse(int argc, char **argv)
{
	static const struct cli cli = {
	    .prog = "sl-origin",
	    .synopsis = "sl-origin --listen HOST:PORT --name NAME [options]",
	    .epilogue =
	        "Per request, the query may set status=, delay=, size=, "
	        "chunked=1, close=1,\nhang=1, reset=1, partial=1, eof=1, "
	        "echo=1. GET /__origin/stats, /__origin/reset\nand "
	        "/__origin/last report on and reset the server.\n",
	    .opts = opt_table,
	    .nopts = NOPTS,
	    .given = opt_given,
	};
	size_t n;

	cli_parse(&cli, argc, argv);
	if (sl_origin_opts.listen == NULL)
		cli_bad_usage("--listen HOST:PORT is required");
	if (sl_origin_opts.name == NULL)
		cli_bad_usage("--name NAME is required");
	n = strlen(sl_origin_opts.name);
	if (n == 0 || n > MAX_NAME ||
	    strspn(sl_origin_opts.name,
	        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	        "0123456789._-") != n)
		cli_bad_usage(
		    "--name: 1 to %d characters of [A-Za-z0-9._-]", MAX_NAME);
	listen_split(sl_origin_opts.listen);
	sl_origin_opts.has_size = given("size");
	if (!given("seed"))
		sl_origin_opts.seed =
		    (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
}

/* splitmix64: spreads one seed into independent per-worker states. */
static uint64_t
splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* xorshift64*: fast, good enough for error sampling and jitter. */
uint64_t
sl_origin_rand(struct sl_origin_worker *w)
{
	uint64_t x = w->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	w->rng = x;
	return x * 0x2545f4914f6cdd1dULL;
}

/*
 * Binds ai without SO_REUSEPORT and closes it again, so that a port
 * already served by another process fails with EADDRINUSE instead of
 * being silently shared through SO_REUSEPORT. Exits 1 if it is taken.
 */
static void
listen_probe(struct addrinfo *ai)
{
	int fd, one = 1;

	fd = socket(
	    ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
	if (fd == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) == -1) {
		fprintf(stderr, "sl-origin: listen on %s: %s\n",
		    sl_origin_opts.listen, strerror(errno));
		exit(1);
	}
	close(fd);
}

/*
 * Opens one listening socket per worker on the same address with
 * SO_REUSEPORT. With port 0 the first socket picks the port and the others
 * join it. Prints the reason and exits 1 on failure.
 */
static void
listeners_open(void)
{
	struct addrinfo hints, *ai;
	struct sockaddr_storage ss;
	socklen_t sslen;
	char port[8];
	unsigned i;
	int fd, one = 1, err;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	err = getaddrinfo(listen_host, listen_port, &hints, &ai);
	if (err != 0) {
		fprintf(stderr, "sl-origin: %s: %s\n", sl_origin_opts.listen,
		    gai_strerror(err));
		exit(1);
	}
	if (strcmp(listen_port, "0") != 0)
		listen_probe(ai);
	for (i = 0; i < sl_origin_nworkers; i++) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
		    ai->ai_protocol);
		if (fd == -1 ||
		    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
		        sizeof(one)) == -1 ||
		    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one,
		        sizeof(one)) == -1 ||
		    bind(fd, ai->ai_addr, ai->ai_addrlen) == -1 ||
		    listen(fd, 4096) == -1 ||
		    evutil_make_socket_nonblocking(fd) == -1) {
			fprintf(stderr, "sl-origin: listen on %s: %s\n",
			    sl_origin_opts.listen, strerror(errno));
			exit(1);
		}
		sl_origin_workers[i].listen_fd = fd;
		if (i > 0 || strcmp(listen_port, "0") != 0)
			continue;
		/* port 0: the other workers must join the chosen port */
		sslen = sizeof(ss);
		getsockname(fd, (struct sockaddr *)&ss, &sslen);
		snprintf(port, sizeof(port), "%u",
		    ntohs(ss.ss_family == AF_INET6
		            ? ((struct sockaddr_in6 *)&ss)->sin6_port
		            : ((struct sockaddr_in *)&ss)->sin_port));
		free(listen_port);
		listen_port = strdup(port);
		((struct sockaddr_in *)ai->ai_addr)->sin_port =
		    htons((uint16_t)atoi(port));
		if (ai->ai_family == AF_INET6)
			((struct sockaddr_in6 *)ai->ai_addr)->sin6_port =
			    htons((uint16_t)atoi(port));
	}
	freeaddrinfo(ai);
}

/* Listener: a connection arrived on worker arg. */
static void
worker_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	sl_origin_conn_accept(arg, fd);
}

/* Listener: accept failed (EMFILE...); pause it rather than spin. */
static void
worker_accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct sl_origin_worker *w = arg;
	struct timeval tv = {0, 100000};

	fprintf(stderr, "sl-origin: accept: %s\n", strerror(errno));
	evconnlistener_disable(l);
	evtimer_add(w->resume_ev, &tv);
}

/* Timer: re-enables the listener paused by worker_accept_error_cb. */
static void
worker_resume_cb(evutil_socket_t fd, short events, void *arg)
{
	struct sl_origin_worker *w = arg;

	evconnlistener_enable(w->listener);
}

/* Wake pipe: the main thread asks this worker to stop. */
static void
worker_wake_cb(evutil_socket_t fd, short events, void *arg)
{
	struct sl_origin_worker *w = arg;

	event_base_loopbreak(w->base);
}

/* Builds worker w's event_base, listener and wake pipe; exits on error. */
static void
worker_setup(struct sl_origin_worker *w, unsigned idx, uint64_t *seed)
{
	w->idx = idx;
	w->rng = splitmix64(seed) | 1;
	pthread_mutex_init(&w->last_lock, NULL);
	w->last_head = malloc(SL_ORIGIN_MAX_HEAD);
	w->base = event_base_new();
	if (w->last_head == NULL || w->base == NULL ||
	    pipe2(w->wake_fd, O_NONBLOCK | O_CLOEXEC) == -1) {
		fprintf(
		    stderr, "sl-origin: worker setup: %s\n", strerror(errno));
		exit(1);
	}
	w->wake_ev =
	    event_new(w->base, w->wake_fd[0], EV_READ, worker_wake_cb, w);
	w->resume_ev = evtimer_new(w->base, worker_resume_cb, w);
	w->listener = evconnlistener_new(w->base, worker_accept_cb, w,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, w->listen_fd);
	if (w->wake_ev == NULL || w->resume_ev == NULL || w->listener == NULL ||
	    event_add(w->wake_ev, NULL) == -1) {
		fprintf(stderr, "sl-origin: worker setup failed\n");
		exit(1);
	}
	evconnlistener_set_error_cb(w->listener, worker_accept_error_cb);
}

/* Worker thread: runs its loop until woken, then frees its connections. */
static void *
worker_main(void *arg)
{
	struct sl_origin_worker *w = arg;

	event_base_dispatch(w->base);
	sl_origin_conn_free_all(w);
	return NULL;
}

/* Frees what worker_setup built (after the thread has been joined). */
static void
worker_free(struct sl_origin_worker *w)
{
	evconnlistener_free(w->listener);
	event_free(w->wake_ev);
	event_free(w->resume_ev);
	event_base_free(w->base);
	close(w->wake_fd[0]);
	close(w->wake_fd[1]);
	free(w->last_head);
	pthread_mutex_destroy(&w->last_lock);
}

/* Writes the pid file, if asked; exits 1 on failure. */
static void
pidfile_write(void)
{
	FILE *f;

	if (sl_origin_opts.pidfile == NULL)
		return;
	f = fopen(sl_origin_opts.pidfile, "w");
	if (f == NULL || fprintf(f, "%ld\n", (long)getpid()) < 0 ||
	    fclose(f) != 0) {
		fprintf(stderr, "sl-origin: %s: %s\n", sl_origin_opts.pidfile,
		    strerror(errno));
		exit(1);
	}
}

/* Parses options, starts the workers, waits for SIGTERM/SIGINT. */
int
main(int argc, char **argv)
{
	sigset_t set;
	uint64_t seed;
	unsigned i;
	int sig, err;

	opts_parse(argc, argv);
	sl_origin_conn_init();
	signal(SIGPIPE, SIG_IGN);

	sl_origin_nworkers = (unsigned)sl_origin_opts.threads;
	sl_origin_workers =
	    calloc(sl_origin_nworkers, sizeof(*sl_origin_workers));
	if (sl_origin_workers == NULL) {
		perror("sl-origin: calloc");
		return 1;
	}
	listeners_open();
	seed = sl_origin_opts.seed;
	for (i = 0; i < sl_origin_nworkers; i++)
		worker_setup(&sl_origin_workers[i], i, &seed);
	pidfile_write();

	/* only the main thread takes the signals, synchronously */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	for (i = 0; i < sl_origin_nworkers; i++) {
		err = pthread_create(&sl_origin_workers[i].thread, NULL,
		    worker_main, &sl_origin_workers[i]);
		if (err != 0) {
			fprintf(stderr, "sl-origin: pthread_create: %s\n",
			    strerror(err));
			return 1;
		}
	}
	fprintf(stderr, "sl-origin %s listening on %s%s%s:%s\n",
	    sl_origin_opts.name,
	    listen_host != NULL && strchr(listen_host, ':') ? "[" : "",
	    listen_host != NULL ? listen_host : "*",
	    listen_host != NULL && strchr(listen_host, ':') ? "]" : "",
	    listen_port);

	do {
		err = sigwait(&set, &sig);
	} while (err != 0);

	for (i = 0; i < sl_origin_nworkers; i++) {
		if (write(sl_origin_workers[i].wake_fd[1], "x", 1) == -1)
			fprintf(
			    stderr, "sl-origin: wake: %s\n", strerror(errno));
	}
	for (i = 0; i < sl_origin_nworkers; i++) {
		pthread_join(sl_origin_workers[i].thread, NULL);
		worker_free(&sl_origin_workers[i]);
	}
	free(sl_origin_workers);
	if (sl_origin_opts.pidfile != NULL)
		unlink(sl_origin_opts.pidfile);
	free(listen_host);
	free(listen_port);
	return 0;
}
