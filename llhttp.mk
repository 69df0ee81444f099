# llhttp is compiled from Debian's node-llhttp sources ($(LLHTTP_SRCDIR)),
# copied into the build tree at build time, never into the repository.
noinst_LIBRARIES += libllhttp.a
nodist_libllhttp_a_SOURCES = llhttp-gen/llhttp.c llhttp-gen/api.c llhttp-gen/http.c
libllhttp_a_CFLAGS = -std=gnu11 -O2 -DLLHTTP_STRICT_MODE=1 $(SL_SAN_CFLAGS) -w
BUILT_SOURCES += $(nodist_libllhttp_a_SOURCES)
CLEANFILES += $(nodist_libllhttp_a_SOURCES)

llhttp-gen/%.c: $(LLHTTP_SRCDIR)/%.c
	@$(MKDIR_P) llhttp-gen
	$(AM_V_GEN)cp $< $@
