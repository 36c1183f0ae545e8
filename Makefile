# trading: PostgreSQL 15 extension, built with PGXS.
#
#   make                 build trading.so, the install script, and the programs
#   make install         install all of it into the server found by pg_config
#   make installcheck    run pg_regress (temporary instance) and the TAP tests
#
# One shared library from extension/*.c and worker/*.c.  Scripts:
#   trading--$(EXTVERSION).sql   the full install script of the current
#                                version: extension/sql/*.sql in name order
#   trading--1.0--1.1.sql        the upgrade from 1.0:
#                                extension/versions/1.0--1.1/*.sql in name order
#   extension/versions/trading--1.0.sql
#                                1.0's install script, frozen as released
# The upgrade test (t/005_upgrade.pl) checks that a 1.0 install with data,
# updated, equals a fresh install of the current version.

EXTENSION = trading
EXTVERSION = 1.1
MODULE_big = trading
EXT_SRCS = $(sort $(wildcard extension/*.c worker/*.c))
OBJS = $(EXT_SRCS:.c=.o)
UPGRADES = trading--1.0--1.1.sql
DATA_built = trading--$(EXTVERSION).sql $(UPGRADES)
DATA = extension/versions/trading--1.0.sql
PGFILEDESC = "trading - operational core of an algorithmic trading desk"

PG_CONFIG ?= pg_config

# -Wextra's unused-parameter and sign-compare fire on PostgreSQL's own
# headers and fmgr macros; everything else is an error.
PG_CPPFLAGS = -I$(srcdir)/extension -Wextra -Werror \
	-Wno-unused-parameter -Wno-sign-compare -Wno-missing-field-initializers
SHLIB_LINK = -lcurl -lwebsockets -lssl -lcrypto

REGRESS = $(basename $(notdir $(sort $(wildcard sql/*.sql))))
REGRESS_OPTS = --temp-instance=tmp_check_regress --temp-config=$(srcdir)/test/regress.conf
TAP_TESTS = 1

EXTRA_CLEAN = tmp_check_regress results regression.diffs regression.out

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

trading--$(EXTVERSION).sql: $(sort $(wildcard extension/sql/*.sql)) trading.control
	@grep -q "^default_version = '$(EXTVERSION)'" trading.control || \
		{ echo "trading.control: default_version is not $(EXTVERSION)"; exit 1; }
	cat $(filter %.sql,$^) > $@

trading--1.0--1.1.sql: $(sort $(wildcard extension/versions/1.0--1.1/*.sql))
	cat $^ > $@

# PGXS does not track header dependencies: rebuild every object when a
# header changes (shared-memory structs must agree across files).
$(OBJS): $(wildcard extension/*.h worker/*.h)

# Programs built beside the library (each directory has its own Makefile
# and is skipped while it does not exist yet).
SUBDIRS = $(patsubst %/Makefile,%,$(wildcard broker/Makefile tools/Makefile))

all: subdirs-all
subdirs-all:
	@for d in $(SUBDIRS); do $(MAKE) -C $$d || exit 1; done
install: subdirs-install
subdirs-install:
	@for d in $(SUBDIRS); do $(MAKE) -C $$d install DESTDIR='$(DESTDIR)' BINDIR='$(bindir)' SHAREDIR='$(datadir)' || exit 1; done
clean: subdirs-clean
subdirs-clean:
	@for d in $(SUBDIRS); do $(MAKE) -C $$d clean; done

.PHONY: subdirs-all subdirs-install subdirs-clean

# The two halves of installcheck, so that scripts/test.sh can run both and
# report each: pg_regress against a temporary instance, then the TAP tests.
PROVE_FLAGS = -I $(srcdir)/t/lib

regresscheck:
	$(pg_regress_installcheck) $(REGRESS_OPTS) $(REGRESS)

tapcheck:
	$(prove_installcheck)

.PHONY: regresscheck tapcheck
