# Included by the extension's makefiles right after $(PGXS), so that one
# source tree builds the same way against PostgreSQL 15, 16, 17 and 18.

# Hidden symbols on every version.  PostgreSQL 16 and later compile modules
# with -fvisibility=hidden (CFLAGS_SL_MODULE) and define PGDLLEXPORT, which
# marks what the server looks up by name: the magic block, _PG_init, the
# functions of PG_FUNCTION_INFO_V1 and background worker entry points.  15
# does neither, so do both here; c.h keeps a PGDLLEXPORT defined before it.
ifeq ($(strip $(CFLAGS_SL_MODULE)),)
override CFLAGS += -fvisibility=hidden
override CPPFLAGS += '-DPGDLLEXPORT=__attribute__((visibility("default")))'
endif

# A PostgreSQL built with a newer compiler hands its modules warning flags
# an older one refuses outright: 18's -Wmissing-variable-declarations is
# unknown to gcc before 14 (Debian 12 has gcc 12).  Ask the compiler once and
# drop the flag if it fails.
ifneq ($(filter -Wmissing-variable-declarations,$(CFLAGS)),)
ifneq ($(shell $(CC) -Werror -Wmissing-variable-declarations -x c -c -o /dev/null /dev/null 2>/dev/null && echo yes),yes)
override CFLAGS := $(filter-out -Wmissing-variable-declarations,$(CFLAGS))
endif
endif
