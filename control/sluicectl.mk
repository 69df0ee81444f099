# sluicectl: the control socket's command-line client (control/PROTOCOL.md).
# Included from Makefile.am; it links the same libslconf.a as the daemon.
bin_PROGRAMS += sluicectl
sluicectl_SOURCES = \
	control/sluicectl.h \
	control/sluicectl.c \
	control/sluicectl_conn.c \
	control/sluicectl_print.c \
	control/sluicectl_watch.c
sluicectl_LDADD = libslconf.a $(SL_LIBS)
