/*
 * replay.c — a main() for the fuzz targets without libFuzzer: runs the
 * target once on every file it is given, so the seed corpora and every
 * crash kept in tests/fuzz/regress/ are replayed by each "make check",
 * with any compiler and any sanitizer (or none).
 *
 *   replay_TARGET [FILE|DIR ...]
 *
 * Without arguments it replays $SL_TOP_SRCDIR/tests/fuzz/corpus/TARGET and
 * $SL_TOP_SRCDIR/tests/fuzz/regress/TARGET (SL_FUZZ_TARGET is compiled
 * in; make check sets SL_TOP_SRCDIR). A directory's files run in name
 * order. A failing input aborts (an invariant) or trips a sanitizer, so
 * the test fails on it; the name of the file is printed before it runs.
 * Exits 0 after replaying, 99 (a hard error for automake) when a file or
 * directory cannot be read or nothing was replayed.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef SL_FUZZ_TARGET
#error "compile with -DSL_FUZZ_TARGET=\"name\""
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned replayed;

/* Run the target on the contents of file PATH. */
static int
replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0, got;

	if (f == NULL) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	for (;;) {
		if (cap - len < 4096) {
			uint8_t *nb = realloc(buf, cap ? cap * 2 : 8192);

			if (nb == NULL) {
				fclose(f);
				free(buf);
				return -1;
			}
			buf = nb;
			cap = cap ? cap * 2 : 8192;
		}
		got = fread(buf + len, 1, cap - len, f);
		len += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		fprintf(stderr, "replay: %s: read error\n", path);
		fclose(f);
		free(buf);
		return -1;
	}
	fclose(f);
	fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
	/* Exactly LEN bytes, as libFuzzer passes them. */
	{
		uint8_t *exact = malloc(len ? len : 1);

		if (exact == NULL) {
			free(buf);
			return -1;
		}
		memcpy(exact, buf, len);
		free(buf);
		LLVMFuzzerTestOneInput(exact, len);
		free(exact);
	}
	replayed++;
	return 0;
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Run the target on every regular file in DIR, in name order. */
static int
replay_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char **names = NULL, path[4096];
	size_t n = 0, i;
	int rc = 0;

	if (d == NULL) {
		fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	while ((e = readdir(d)) != NULL) {
		char **nn;

		if (e->d_name[0] == '.')
			continue; /* ".", "..", and dot-files like .gitkeep */
		nn = realloc(names, (n + 1) * sizeof *names);
		if (nn == NULL || (nn[n] = strdup(e->d_name)) == NULL) {
			closedir(d);
			return -1;
		}
		names = nn;
		n++;
	}
	closedir(d);
	qsort(names, n, sizeof *names, name_cmp);
	for (i = 0; i < n; i++) {
		struct stat st;

		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode) &&
		    replay_file(path) != 0)
			rc = -1;
		free(names[i]);
	}
	free(names);
	return rc;
}

/* A file or a directory. */
static int
replay_path(const char *path)
{
	struct stat st;

	if (stat(path, &st) != 0) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	return S_ISDIR(st.st_mode) ? replay_dir(path) : replay_file(path);
}

int
main(int argc, char **argv)
{
	const char *top = getenv("SL_TOP_SRCDIR");
	char path[4096];
	int i, rc = 0;

	if (argc > 1) {
		for (i = 1; i < argc; i++) {
			if (replay_path(argv[i]) != 0)
				rc = 99;
		}
	} else {
		if (top == NULL || top[0] == '\0') {
			fprintf(stderr, "replay: give files or directories, "
			                "or set SL_TOP_SRCDIR\n");
			return 99;
		}
		snprintf(path, sizeof path, "%s/tests/fuzz/corpus/%s", top,
		    SL_FUZZ_TARGET);
		if (replay_path(path) != 0)
			rc = 99;
		/* regress/TARGET exists once a crash has been kept. */
		snprintf(path, sizeof path, "%s/tests/fuzz/regress/%s", top,
		    SL_FUZZ_TARGET);
		if (access(path, F_OK) == 0 && replay_path(path) != 0)
			rc = 99;
	}
	if (rc == 0 && replayed == 0) {
		fprintf(stderr, "replay: no inputs\n");
		rc = 99;
	}
	printf("%s: replayed %u inputs\n", SL_FUZZ_TARGET, replayed);
	return rc;
}
