# analysis/: per-version counters and time windows (appended to
# libslanalysis.a, declared in analysis/Makemodule.am).
libslanalysis_a_SOURCES += \
	analysis/stats.c analysis/stats.h \
	analysis/window.c analysis/window.h \
	analysis/rollout.c analysis/rollout.h
