/*
 * sluicectl.c — the command-line client of sluice's control socket.
 *
 *   sluicectl [-s SOCKET] [--json] [--owner NAME] [--timeout SECONDS]
 *	       COMMAND...
 *
 * The words of COMMAND (split at spaces and tabs, as the daemon splits a
 * line) are joined with single spaces and sent as one line
 * (control/PROTOCOL.md); the one-line JSON reply is printed readably, or
 * unchanged with --json. One table lists every command: the words that
 * pick it, its usage, help and example (--help prints them), the printer
 * for its reply, and for the client-side commands (watch, rollout wait)
 * the function that runs them instead. Commands not in the table are sent
 * as they are, so a newer daemon's commands work with an older client.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "conf/xmalloc.h"
#include "control/sluicectl.h"

/* The daemon closes the connection on a longer line (PROTOCOL.md). */
#define SL_CLI_LINE_MAX (64 * 1024 - 100)

/* One command: what picks it, what --help says, who handles it. */
struct command {
	const char *words; /* leading words; "a|b" matches either */
	const char *usage;
	const char *help;
	const char *example;   /* arguments after "sluicectl " */
	sl_cli_printer *print; /* reply printer; NULL: generic */
	int (*run)(struct sl_cli *, char **, int); /* client-side command */
};

static int run_help(struct sl_cli *cli, char **args, int nargs);
static bool starts_with(const struct command *c, char **words, int nwords);
static char *join_words(char **words, int nwords);

static const struct command commands[] = {
    {"help", "help [COMMAND] [--daemon]",
        "this list (or the commands starting with COMMAND); with --daemon "
        "or --json, the daemon's own list",
        "help rollout", sl_cli_print_help, run_help},
    {"show services", "show services",
        "every service: stable version, weights, lock, rollout",
        "show services", sl_cli_print_services, NULL},
    {"show service", "show service SVC",
        "one service: hosts, stickiness, versions and their servers",
        "show service shop", sl_cli_print_service, NULL},
    {"show stats", "show stats SVC [SECONDS]",
        "requests, rps, errors and latency per version over the last "
        "SECONDS (1-600; default: since start)",
        "show stats shop 60", sl_cli_print_stats, NULL},
    {"show events", "show events [N]",
        "the last N changes and who made them, newest last (default 20, "
        "at most 1000)",
        "show events 50", sl_cli_print_events, NULL},
    {"set weights", "set weights SVC VERSION=PCT [VERSION=PCT ...]",
        "split the traffic; must sum to 100, versions not named get 0",
        "set weights shop blue=90 green=10", sl_cli_print_weights, NULL},
    {"switch", "switch SVC VERSION",
        "blue/green: send 100% to VERSION and make it the stable version",
        "switch shop green", sl_cli_print_switch, NULL},
    {"set server", "set server SVC VERSION HOST:PORT ready|drain|maint",
        "put a server in rotation, let it finish its requests, or take it "
        "out",
        "set server shop blue 10.0.0.1:8080 drain", sl_cli_print_server, NULL},
    {"rollout start", "rollout start SVC VERSION",
        "start a canary rollout of VERSION through the configured steps",
        "rollout start shop green", sl_cli_print_rollout_change, NULL},
    {"rollout pause|resume|abort|promote",
        "rollout pause|resume|abort|promote SVC",
        "hold the rollout at its step, continue it, give it up (canary to "
        "0%) or finish it now (canary to 100%)",
        "rollout pause shop", sl_cli_print_rollout_change, NULL},
    {"show rollout", "show rollout SVC",
        "the rollout's state and step, and its last verdicts with their "
        "checks",
        "show rollout shop", sl_cli_print_rollout, NULL},
    {"rollout wait", "rollout wait SVC [--timeout S]",
        "(client-side) wait until the rollout ends, printing each step; "
        "exit 0 promoted, 1 reverted or aborted, 2 timed out after S "
        "seconds (0 or none: no limit); reconnects when sluice restarts",
        "rollout wait shop --timeout 900", NULL, sl_cli_rollout_wait},
    {"lock", "lock SVC OWNER TTL_SECONDS",
        "only OWNER (see --owner) may change SVC for the next TTL_SECONDS",
        "lock shop deploy-42 600", sl_cli_print_lock, NULL},
    {"unlock", "unlock SVC OWNER", "release OWNER's lock on SVC",
        "unlock shop deploy-42", sl_cli_print_lock, NULL},
    {"reset", "reset SVC",
        "drop runtime changes: back to the config's weights, stable "
        "version and server states",
        "reset shop", sl_cli_print_reset, NULL},
    {"watch", "watch SVC [--interval S] [--count N]",
        "(client-side) live view of SVC: weight bars, rps, errors, p50, "
        "p99, rollout; refreshed every S seconds (default 1), N times "
        "(default: until Ctrl-C)",
        "watch shop", NULL, sl_cli_watch},
};
#define NCOMMANDS (sizeof commands / sizeof *commands)

/* The usage line, for errors. */
static const char usage_line[] =
    "usage: sluicectl [-s SOCKET] [--json] [--owner NAME] "
    "[--timeout SECONDS]\n"
    "                 COMMAND...\n";

/* Print TEXT to F word-wrapped at 79 columns, each line indented INDENT. */
static void
wrap(FILE *f, int indent, const char *text)
{
	const char *p = text, *sp;
	int col = 0, len;

	while (*p != '\0') {
		sp = strchr(p, ' ');
		len = sp != NULL ? (int)(sp - p) : (int)strlen(p);
		if (col > 0 && col + 1 + len > 79) {
			fputc('\n', f);
			col = 0;
		}
		if (col == 0)
			col = fprintf(f, "%*s%.*s", indent, "", len, p);
		else
			col += fprintf(f, " %.*s", len, p);
		p += len + (sp != NULL);
	}
	fputc('\n', f);
}

/*
 * Print the help to F: options, then every command (or those whose words
 * start with ONLY[0..NONLY)) with an example.
 */
static void
print_usage(FILE *f, char **only, int nonly)
{
	fputs(usage_line, f);
	if (nonly == 0)
		fputs("\nSend COMMAND to sluice's control socket and print the "
		      "reply readably.\n"
		      "The words of COMMAND are joined with spaces, so "
		      "quoting a whole command\n"
		      "(sluicectl 'show stats shop') works too.\n"
		      "\n"
		      "options:\n"
		      "  -s, --socket SOCKET    the control socket (default: "
		      "$SLUICE_SOCKET, else\n"
		      "                         " SL_CLI_SOCKET_DEFAULT ")\n"
		      "  -j, --json             print the daemon's JSON reply "
		      "line unchanged\n"
		      "  -o, --owner NAME       act as NAME (sends \"as NAME "
		      "COMMAND\"), e.g. to\n"
		      "                         change a service NAME has "
		      "locked\n"
		      "  -t, --timeout SECONDS  wait at most SECONDS for each "
		      "reply (default 10;\n"
		      "                         0: no limit)\n"
		      "  -h, --help             this help\n",
		    f);
	fputs("\ncommands:\n", f);
	for (size_t i = 0; i < NCOMMANDS; i++) {
		if (!starts_with(&commands[i], only, nonly))
			continue;
		fprintf(f, "  %s\n", commands[i].usage);
		wrap(f, 6, commands[i].help);
		fprintf(f, "      e.g. sluicectl %s\n", commands[i].example);
	}
	if (nonly == 0)
		fputs("\nexit status:\n"
		      "  0  done (rollout wait: promoted)\n"
		      "  1  the daemon refused the command (rollout wait: "
		      "reverted or aborted)\n"
		      "  2  usage error (rollout wait: timed out)\n"
		      "  3  cannot connect, no reply in time, or a reply that "
		      "is not JSON\n",
		    f);
}

/* True if WORD is one of the '|'-separated alternatives in PAT[0..N). */
static bool
word_matches(const char *pat, size_t n, const char *word)
{
	const char *end = pat + n, *bar;
	size_t len;

	while (pat < end) {
		bar = memchr(pat, '|', (size_t)(end - pat));
		len = (bar != NULL ? bar : end) - pat;
		if (strlen(word) == len && strncmp(pat, word, len) == 0)
			return true;
		pat += len + 1;
	}
	return false;
}

/* How many of WORDS command C's words match: all of them, or 0. */
static int
match(const struct command *c, char **words, int nwords)
{
	const char *p = c->words, *sp;
	size_t len;
	int n = 0;

	while (*p != '\0') {
		sp = strchr(p, ' ');
		len = sp != NULL ? (size_t)(sp - p) : strlen(p);
		if (n >= nwords || !word_matches(p, len, words[n]))
			return 0;
		n++;
		p += len + (sp != NULL);
	}
	return n;
}

/* The command WORDS start with, or NULL; *nmatched gets its word count. */
static const struct command *
lookup(char **words, int nwords, int *nmatched)
{
	const struct command *best = NULL;
	int n;

	*nmatched = 0;
	for (size_t i = 0; i < NCOMMANDS; i++) {
		n = match(&commands[i], words, nwords);
		if (n > *nmatched) {
			*nmatched = n;
			best = &commands[i];
		}
	}
	return best;
}

/*
 * Send LINE and print the reply: raw with --json, else with CMD's printer
 * (indented JSON if the printer does not know the shape). Returns the exit
 * code.
 */
static int
send_command(struct sl_cli *cli, const char *line, const struct command *cmd,
    char **words, int nwords)
{
	sl_cli_printer *print = cmd != NULL && cmd->print != NULL
	    ? cmd->print
	    : sl_cli_print_generic;
	json_t *reply;
	char *raw;
	int rc = SL_CLI_OK;

	if (sl_cli_call(cli, line, &reply, &raw) == -1)
		return SL_CLI_TROUBLE;
	if (cli->json)
		puts(raw);
	if (!sl_cli_reply_ok(reply)) {
		sl_cli_warn("%s", sl_cli_reply_error(reply));
		rc = SL_CLI_REFUSED;
	} else if (!cli->json && print(reply, words, nwords) == -1) {
		sl_cli_print_json(reply);
	}
	json_decref(reply);
	free(raw);
	return rc;
}

/*
 * True if the words of command C start with WORDS[0..NWORDS): "rollout",
 * "set weights" or "rollout abort" (one of C's alternatives).
 */
static bool
starts_with(const struct command *c, char **words, int nwords)
{
	const char *p = c->words;
	size_t len;

	for (int i = 0; i < nwords; i++) {
		len = strcspn(p, " ");
		if (len == 0 || !word_matches(p, len, words[i]))
			return false;
		p += len;
		p += *p == ' ';
	}
	return true;
}

/*
 * `help [COMMAND] [--daemon]`: the built-in list, the part of it for the
 * commands starting with COMMAND's words, or with --daemon (or --json) the
 * daemon's own list (`help COMMAND` there too).
 */
static int
run_help(struct sl_cli *cli, char **args, int nargs)
{
	static char help_word[] = "help";
	bool daemon = cli->json;
	char **only, *line, *what;
	int nonly = 0, rc;
	size_t i;

	/* "help" and the words after it: the line for the daemon. */
	only = sl_xreallocarray(NULL, (size_t)nargs + 1, sizeof *only);
	only[0] = help_word;
	for (int a = 0; a < nargs; a++) {
		if (strcmp(args[a], "--daemon") == 0) {
			daemon = true;
		} else if (args[a][0] == '-') {
			sl_cli_warn("help: unexpected argument: %s", args[a]);
			free(only);
			return SL_CLI_USAGE;
		} else {
			only[1 + nonly++] = args[a];
		}
	}
	if (daemon) {
		line = join_words(only, 1 + nonly);
		rc = send_command(cli, line, &commands[0], only, 1 + nonly);
		free(line);
		free(only);
		return rc;
	}
	for (i = 0; i < NCOMMANDS; i++) {
		if (starts_with(&commands[i], only + 1, nonly))
			break;
	}
	if (i == NCOMMANDS) {
		what = join_words(only + 1, nonly);
		sl_cli_warn("help: no command starts with \"%s\"", what);
		free(what);
		free(only);
		return SL_CLI_USAGE;
	}
	print_usage(stdout, only + 1, nonly);
	free(only);
	return SL_CLI_OK;
}

/*
 * Split ARGV[0..ARGC) at spaces and tabs, as the daemon splits a line
 * (PROTOCOL.md), into *WORDS (a heap array of pointers into the heap
 * string *BUF; the caller frees both). Returns the word count, or -1
 * (message printed) if an argument holds another control character, which
 * could smuggle a second command onto the socket.
 */
static int
split_words(int argc, char **argv, char ***words, char **buf)
{
	size_t len = 0;
	char *p, *tok;
	int n = 0;

	for (int i = 0; i < argc; i++) {
		for (p = argv[i]; *p != '\0'; p++) {
			if (((unsigned char)*p < 0x20 && *p != '\t') ||
			    *p == 0x7f) {
				sl_cli_warn("control character in argument "
				            "%d",
				    i + 1);
				return -1;
			}
		}
		len += strlen(argv[i]) + 1;
	}
	*buf = sl_xmalloc(len + 1);
	*words = sl_xreallocarray(NULL, len + 1, sizeof **words);
	p = *buf;
	for (int i = 0; i < argc; i++)
		p += sprintf(p, "%s ", argv[i]);
	*p = '\0';
	for (tok = strtok(*buf, " \t"); tok != NULL; tok = strtok(NULL, " \t"))
		(*words)[n++] = tok;
	return n;
}

/* Join WORDS with single spaces. Heap. */
static char *
join_words(char **words, int nwords)
{
	size_t len = 1;
	char *line, *p;

	for (int i = 0; i < nwords; i++)
		len += strlen(words[i]) + 1;
	p = line = sl_xmalloc(len);
	for (int i = 0; i < nwords; i++)
		p += sprintf(p, "%s%s", i ? " " : "", words[i]);
	*p = '\0';
	return line;
}

/* Parse the options, then run a client-side command or send one line. */
int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"socket", required_argument, NULL, 's'},
	    {"json", no_argument, NULL, 'j'},
	    {"owner", required_argument, NULL, 'o'},
	    {"timeout", required_argument, NULL, 't'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct sl_cli cli = {.timeout = 10};
	const struct command *cmd;
	char **words = NULL, *buf = NULL, *line, *end;
	const char *env;
	int c, nwords, nmatched, rc;

	opterr = 0;
	while (
	    (c = getopt_long(argc, argv, "+s:jo:t:h", longopts, NULL)) != -1) {
		switch (c) {
		case 's':
			cli.socket = optarg;
			break;
		case 'j':
			cli.json = true;
			break;
		case 'o':
			if (!sl_conf_valid_owner(optarg)) {
				sl_cli_warn("bad --owner \"%s\": 1 to 63 of "
				            "A-Z a-z 0-9 _ . @ : -",
				    optarg);
				return SL_CLI_USAGE;
			}
			cli.owner = optarg;
			break;
		case 't':
			errno = 0;
			cli.timeout = strtod(optarg, &end);
			if (errno != 0 || end == optarg || *end != '\0' ||
			    !isfinite(cli.timeout) || cli.timeout < 0 ||
			    cli.timeout > 1e9) {
				sl_cli_warn("bad --timeout \"%s\": seconds, "
				            "0 for no limit",
				    optarg);
				return SL_CLI_USAGE;
			}
			break;
		case 'h':
			print_usage(stdout, NULL, 0);
			return SL_CLI_OK;
		default:
			if (optopt != 0 && strchr("sot", optopt) != NULL)
				sl_cli_warn("option -%c needs a value", optopt);
			else if (optopt != 0)
				sl_cli_warn("unknown option -%c", optopt);
			else
				sl_cli_warn("unknown or incomplete option %s",
				    argv[optind - 1]);
			fputs(usage_line, stderr);
			fputs(
			    "(sluicectl --help lists every command)\n", stderr);
			return SL_CLI_USAGE;
		}
	}
	/* "sluicectl show services --json" means what it says: --json may
	 * also follow the command (no command takes it as an argument). */
	for (c = nwords = optind; c < argc; c++) {
		if (strcmp(argv[c], "--json") == 0)
			cli.json = true;
		else
			argv[nwords++] = argv[c];
	}
	argc = nwords;
	if (cli.socket == NULL) {
		env = getenv("SLUICE_SOCKET");
		cli.socket =
		    env != NULL && *env != '\0' ? env : SL_CLI_SOCKET_DEFAULT;
	}
	nwords = split_words(argc - optind, argv + optind, &words, &buf);
	if (nwords <= 0) {
		if (nwords == 0) {
			sl_cli_warn("no command");
			fputs(usage_line, stderr);
			fputs(
			    "(sluicectl --help lists every command)\n", stderr);
		}
		free(words);
		free(buf);
		return SL_CLI_USAGE;
	}

	cmd = lookup(words, nwords, &nmatched);
	if (cmd != NULL && cmd->run != NULL) {
		rc = cmd->run(&cli, words + nmatched, nwords - nmatched);
	} else {
		line = join_words(words, nwords);
		if (strlen(line) > SL_CLI_LINE_MAX) {
			sl_cli_warn("command too long (%zu bytes; the socket "
			            "takes %d at most)",
			    strlen(line), SL_CLI_LINE_MAX);
			rc = SL_CLI_USAGE;
		} else {
			rc = send_command(&cli, line, cmd, words, nwords);
		}
		free(line);
	}
	sl_cli_conn_free(cli.conn);
	free(words);
	free(buf);
	return rc;
}
