/*
 * cliopt.c — command-line parsing for sluice's tool programs: getopt_long
 * built from the program's option table, bounds checked per type, the
 * usage text generated from the same table.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/tool/cliopt.h"

#define EXIT_USAGE 2

static const char *prog = "sl-tool";

void
cli_bad_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry '%s --help'.\n", prog);
	exit(EXIT_USAGE);
}

/* "--name ARG" for the usage text. */
static void
left_column(const struct cli_opt *o, char *buf, size_t size)
{
	snprintf(buf, size, "--%s%s%s", o->name, o->arg != NULL ? " " : "",
	    o->arg != NULL ? o->arg : "");
}

static void
usage(const struct cli *cli, FILE *f)
{
	char left[64];
	size_t i, w = 0;

	for (i = 0; i < cli->nopts; i++) {
		left_column(&cli->opts[i], left, sizeof left);
		if (strlen(left) > w)
			w = strlen(left);
	}
	fprintf(f, "usage: %s\n\n", cli->synopsis);
	for (i = 0; i < cli->nopts; i++) {
		left_column(&cli->opts[i], left, sizeof left);
		fprintf(f, "  %-*s  %s\n", (int)w, left, cli->opts[i].help);
	}
	if (cli->epilogue != NULL)
		fprintf(f, "\n%s", cli->epilogue);
}

/* Store option O's argument ARG, checking its bounds. */
static void
set(const struct cli_opt *o, const char *arg)
{
	unsigned long long u;
	double v;
	char *end;

	switch (o->type) {
	case CLI_FLAG:
		if (o->target != NULL)
			*(bool *)o->target = o->min != 0;
		break;
	case CLI_STR:
		*(const char **)o->target = arg;
		break;
	case CLI_UINT:
		errno = 0;
		u = strtoull(arg, &end, 10);
		if (*arg == '\0' || *end != '\0' || errno != 0 ||
		    strchr(arg, '-') != NULL || (double)u < o->min ||
		    (double)u > o->max)
			cli_bad_usage(
			    "--%s: '%s' is not an integer in %.0f..%.0f",
			    o->name, arg, o->min, o->max);
		*(uint64_t *)o->target = u;
		break;
	case CLI_DOUBLE:
		errno = 0;
		v = strtod(arg, &end);
		if (*arg == '\0' || *end != '\0' || errno != 0 ||
		    !isfinite(v) || v < o->min || v > o->max)
			cli_bad_usage("--%s: '%s' is not a number in %g..%g",
			    o->name, arg, o->min, o->max);
		*(double *)o->target = v;
		break;
	case CLI_LIST: {
		struct cli_list *l = o->target;

		if (l->n == l->max)
			cli_bad_usage("at most %zu --%s", l->max, o->name);
		l->v[l->n++] = arg;
		break;
	}
	}
}

void
cli_parse(const struct cli *cli, int argc, char **argv)
{
	struct option *lopts = calloc(cli->nopts + 1, sizeof *lopts);
	size_t i, n = cli->nopts;
	int ch;

	prog = cli->prog;
	if (lopts == NULL) {
		fprintf(stderr, "%s: out of memory\n", prog);
		exit(1);
	}
	for (i = 0; i < n; i++) {
		lopts[i].name = cli->opts[i].name;
		lopts[i].has_arg = cli->opts[i].type == CLI_FLAG
		    ? no_argument
		    : required_argument;
		lopts[i].val = 256 + (int)i;
	}
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "", lopts, NULL)) != -1) {
		if (ch < 256 || ch >= 256 + (int)n) {
			/* getopt sets optopt both for a missing argument and
			 * for one given to a flag (--echo=1). */
			if (optopt >= 256 &&
			    cli->opts[optopt - 256].type == CLI_FLAG)
				cli_bad_usage("--%s takes no argument",
				    cli->opts[optopt - 256].name);
			if (optopt >= 256)
				cli_bad_usage("--%s needs an argument",
				    cli->opts[optopt - 256].name);
			cli_bad_usage("unknown option '%s'", argv[optind - 1]);
		}
		i = (size_t)(ch - 256);
		if (strcmp(cli->opts[i].name, "help") == 0) {
			usage(cli, stdout);
			exit(0);
		}
		set(&cli->opts[i], optarg);
		if (cli->given != NULL)
			cli->given[i] = true;
	}
	free(lopts);
	if (optind < argc)
		cli_bad_usage("unexpected argument '%s'", argv[optind]);
}
