/*
 * cliopt.h — the command line of sluice's tool programs (sl-origin,
 * sl-loadgen): one table per program drives parsing, bounds checks and
 * --help. Long options only ("--name VALUE" or "--name=VALUE"). A bad
 * command line prints "PROG: what is wrong" and a hint on stderr and
 * exits 2.
 */
#ifndef SL_CLIOPT_H
#define SL_CLIOPT_H

#include <stdbool.h>
#include <stddef.h>

enum cli_type {
	CLI_FLAG,   /* no argument: stores (bool)(min != 0) at target */
	CLI_STR,    /* const char * at target */
	CLI_UINT,   /* uint64_t at target, within [min, max] */
	CLI_DOUBLE, /* finite double at target, within [min, max] */
	CLI_LIST,   /* repeatable: appended to the struct cli_list at target */
};

struct cli_opt {
	const char *name;
	enum cli_type type;
	void *target; /* CLI_FLAG may have none */
	double min, max;
	const char *arg;  /* the argument's name in --help (not for a flag) */
	const char *help; /* one line */
};

/* The arguments of a repeatable option, in order: at most max. */
struct cli_list {
	const char **v;
	size_t n, max;
};

struct cli {
	const char *prog;     /* "sl-origin" */
	const char *synopsis; /* the usage line after "usage: " */
	const char *epilogue; /* text after the option list, or NULL */
	const struct cli_opt *opts;
	size_t nopts;
	bool *given; /* NOPTS flags: which options the command line had */
};

/*
 * Parse ARGV into the targets of CLI's options. "--help" (an option of
 * that name in the table) prints the usage to stdout and exits 0.
 */
void cli_parse(const struct cli *cli, int argc, char **argv);

/* Report a bad command line for the program being parsed; exits 2. */
void cli_bad_usage(const char *fmt, ...)
    __attribute__((noreturn, format(printf, 1, 2)));

#endif
