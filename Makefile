# Builds the nginx module against Debian's nginx-dev tree and the companion worker,
# out of tree in $(BUILD).
#
#   make                      build/: the module and the worker
#   make sanitize             build/asan/: both with AddressSanitizer and UBSan
#                             (the same as make BUILD=build/asan SANITIZE=1);
#                             scripts/test --sanitize runs the suites against them,
#                             see docs/sanitizers.md
#   make fuzz                 build/fuzz/: the libFuzzer targets of fuzz/, with clang;
#                             scripts/fuzz runs them, see docs/fuzzing.md

SHELL      := /bin/bash
BUILD      ?= build
NGINX_SRC  ?= /usr/share/nginx/src
CC         ?= cc
PG_CONFIG  ?= pg_config

WARN       := -Wall -Wextra -Wno-unused-parameter
CFLAGS     ?= -O2 -g
PG_INC     := $(shell $(PG_CONFIG) --includedir)
PG_LIB     := $(shell $(PG_CONFIG) --libdir)

# SANITIZE=1: -fsanitize=address,undefined for the module (through nginx's
# configure, so also in its feature tests) and the worker. Use its own BUILD.
SAN_BUILD  ?= build/asan
SAN_FLAGS  := -fsanitize=address,undefined -fno-omit-frame-pointer -O1 -g
ifeq ($(SANITIZE),1)
CFLAGS     := $(SAN_FLAGS)
NGX_CC_OPT += $(SAN_FLAGS)
NGX_LD_OPT += -fsanitize=address,undefined
endif

MODULE_SO  := $(BUILD)/nginx/objs/ngx_http_chathistory_module.so
WORKER     := $(BUILD)/chathistory-worker

MODULE_DIRS := src src/api src/record src/auth src/status src/pg src/util \
               src/audio src/common
MODULE_SRC := config ngx_http_chathistory_module.c \
              $(foreach d,$(MODULE_DIRS),$(wildcard $(d)/*.c $(d)/*.h))
WORKER_SRC := $(wildcard src/worker/*.c src/common/*.c)
WORKER_HDR := $(wildcard src/worker/*.h src/common/*.h)

.PHONY: all module worker clean test up down sanitize fuzz

all: module worker

module: $(MODULE_SO)
worker: $(WORKER)

$(BUILD)/nginx/objs/Makefile: config
	rm -rf $(BUILD)/nginx
	mkdir -p $(BUILD)
	cp -r $(NGINX_SRC) $(BUILD)/nginx
	cd $(BUILD)/nginx && . ./conf_flags && \
	    ./configure "$${NGX_CONF_FLAGS[@]}" $(NGX_EXTRA_FLAGS) \
	        --with-cc-opt="$(WARN) -Werror $(NGX_CC_OPT)" \
	        --with-ld-opt="$(NGX_LD_OPT)" \
	        --add-dynamic-module=$(CURDIR) >configure.log

$(MODULE_SO): $(BUILD)/nginx/objs/Makefile $(MODULE_SRC)
	$(MAKE) -C $(BUILD)/nginx -f objs/Makefile modules

$(WORKER): $(WORKER_SRC) $(WORKER_HDR)
	mkdir -p $(BUILD)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -std=gnu11 -Isrc/common -I$(PG_INC) \
	    $(shell pkg-config --cflags libcjson libcurl libcrypto) $(LDFLAGS) \
	    -o $@ $(WORKER_SRC) -L$(PG_LIB) -lpq \
	    $(shell pkg-config --libs libcjson libcurl libcrypto) -lm

sanitize:
	$(MAKE) BUILD=$(SAN_BUILD) SANITIZE=1 all

test: all
	scripts/test

up:
	scripts/up

down:
	scripts/down

clean:
	rm -rf $(BUILD)


# make fuzz: nginx's own source (scripts/nginx-source; nginx-dev has only
# headers) is configured in $(FUZZ_BUILD) with Debian's flags and the module
# added statically, and built with clang, instrumented for libFuzzer, ASan
# and UBSan.  Its objects, main renamed, are one archive the targets link:
# each takes only what it calls.
FUZZ_BUILD    ?= build/fuzz
FUZZ_CC       ?= clang-14
FUZZ_NGINX    := $(FUZZ_BUILD)/nginx-1.22.1
FUZZ_SAN      := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS   := -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer-no-link \
                 $(FUZZ_SAN)
FUZZ_NGX_LIB  := $(FUZZ_BUILD)/libnginx.a
FUZZ_HELP_LIB := $(FUZZ_BUILD)/libfuzzhelp.a
FUZZ_TARGETS  := $(patsubst fuzz/%.c,$(FUZZ_BUILD)/%,$(wildcard fuzz/fuzz_*.c))
FUZZ_HELPERS  := $(patsubst fuzz/%.c,$(FUZZ_BUILD)/%.o,\
                   $(wildcard fuzz/harness_*.c))
FUZZ_INCS     := $(addprefix -I$(FUZZ_NGINX)/,src/core src/event \
                   src/event/modules src/os/unix objs src/http \
                   src/http/modules src/http/v2) \
                 $(addprefix -I,$(MODULE_DIRS)) -Ifuzz -I$(PG_INC)

fuzz: $(FUZZ_TARGETS)

$(FUZZ_NGINX)/configure:
	scripts/nginx-source $(FUZZ_BUILD)

$(FUZZ_NGINX)/objs/Makefile: $(FUZZ_NGINX)/configure config
	cd $(FUZZ_NGINX) && . $(NGINX_SRC)/conf_flags && \
	    ./configure "$${NGX_CONF_FLAGS[@]}" --with-cc=$(FUZZ_CC) \
	        --with-cc-opt="$(FUZZ_CFLAGS)" --with-ld-opt="$(FUZZ_SAN)" \
	        --add-module=$(CURDIR) >configure.log

$(FUZZ_NGX_LIB): $(FUZZ_NGINX)/objs/Makefile $(MODULE_SRC)
	$(MAKE) -C $(FUZZ_NGINX) -f objs/Makefile binary
	objcopy --redefine-sym main=ngx_nginx_main \
	    $(FUZZ_NGINX)/objs/src/core/nginx.o $(FUZZ_BUILD)/nginx_main.o
	rm -f $@
	ar rcs $@ $(FUZZ_BUILD)/nginx_main.o $$(find $(FUZZ_NGINX)/objs \
	    -name '*.o' ! -path '*/src/core/nginx.o' | sort)
	sed -n '/(LINK) -o objs\/nginx/,/^\s*$$/p' $(FUZZ_NGINX)/objs/Makefile \
	    | grep -oE -- '-[lL][^ ]+' | tr '\n' ' ' >$(FUZZ_BUILD)/libs

$(FUZZ_BUILD)/harness_%.o: fuzz/harness_%.c fuzz/harness.h $(FUZZ_NGX_LIB)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(WARN) -Werror $(FUZZ_INCS) -c -o $@ $<

$(FUZZ_HELP_LIB): $(FUZZ_HELPERS)
	rm -f $@
	ar rcs $@ $^

# the API's targets answer the statements themselves: no database behind
$(FUZZ_BUILD)/fuzz_body $(FUZZ_BUILD)/fuzz_args: FUZZ_LDFLAGS := \
    -Wl,--wrap=ngx_http_chathistory_api_query

$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c fuzz/harness.h $(FUZZ_HELP_LIB) \
                      $(FUZZ_NGX_LIB)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $(WARN) -Werror $(FUZZ_INCS) \
	    -o $@ $< $(FUZZ_LDFLAGS) -Wl,--start-group $(FUZZ_HELP_LIB) \
	    $(FUZZ_NGX_LIB) -Wl,--end-group $$(cat $(FUZZ_BUILD)/libs)
