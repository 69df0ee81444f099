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
 * order. Each input runs in a child process, so one failure (an
 * invariant's abort(), a sanitizer report) does not hide the next: every
 * failing file is listed. The child's TMPDIR is a fresh directory, removed
 * afterwards even if the child died without cleaning up. Exits 0 when all pass,
 * 1 when any failed, 99 (a hard error for automake) when a file or directory
 * cannot be read or nothing was replayed.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SL_FUZZ_TARGET
#error "compile with -DSL_FUZZ_TARGET=\"name\""
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned replayed, failed;

/* nftw() callback: remove one entry, children first. */
static int
remove_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

/* Run the target on the contents of file PATH, in a child process. */
static int
replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0, got;
	const char *base = getenv("TMPDIR");
	char tmp[4096];
	pid_t pid;
	int status;

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
	snprintf(tmp, sizeof tmp, "%s/sl-replay.XXXXXX",
	    base != NULL && base[0] != '\0' ? base : "/tmp");
	if (mkdtemp(tmp) == NULL) {
		fprintf(
		    stderr, "replay: mkdtemp %s: %s\n", tmp, strerror(errno));
		free(buf);
		return -1;
	}
	fflush(NULL);
	pid = fork();
	if (pid == -1) {
		fprintf(stderr, "replay: fork: %s\n", strerror(errno));
		free(buf);
		return -1;
	}
	if (pid == 0) {
		/* Exactly LEN bytes, as libFuzzer passes them. */
		uint8_t *exact = malloc(len ? len : 1);

		if (exact == NULL || setenv("TMPDIR", tmp, 1) != 0)
			_exit(99);
		memcpy(exact, buf, len);
		free(buf);
		LLVMFuzzerTestOneInput(exact, len);
		free(exact);
		exit(0); /* atexit handlers run, and LeakSanitizer */
	}
	free(buf);
	while (waitpid(pid, &status, 0) == -1) {
		if (errno != EINTR)
			return -1;
	}
	nftw(tmp, remove_cb, 16, FTW_DEPTH | FTW_PHYS);
	replayed++;
	if (WIFSIGNALED(status) || WEXITSTATUS(status) != 0) {
		failed++;
		if (WIFSIGNALED(status))
			printf(
			    "FAIL: %s (signal %d)\n", path, WTERMSIG(status));
		else
			printf(
			    "FAIL: %s (exit %d)\n", path, WEXITSTATUS(status));
	}
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
			fprintf(stderr,
			    "replay: give files or directories, "
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
	printf("%s: replayed %u inputs, %u failed\n", SL_FUZZ_TARGET, replayed,
	    failed);
	if (rc == 0 && failed > 0)
		rc = 1;
	return rc;
}
