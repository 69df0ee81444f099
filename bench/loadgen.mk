# bench/loadgen.mk: sl-loadgen, the open-loop load generator that
# bench/compare.sh drives (see bench/README.md). Included from Makefile.am.
noinst_PROGRAMS += bench/sl-loadgen
bench_sl_loadgen_SOURCES = bench/loadgen.c bench/loadgen_conn.c \
	bench/loadgen.h tests/tool/cliopt.c tests/tool/cliopt.h
bench_sl_loadgen_LDADD = libslanalysis.a libslconf.a libllhttp.a $(SL_LIBS)
EXTRA_DIST += bench/compare.sh bench/lib.sh bench/README.md bench/RESULTS.md \
	bench/configs/sluice.ini bench/configs/haproxy.cfg \
	bench/configs/nginx.conf
