# Builds the nginx module against Debian's nginx-dev tree and the companion worker,
# out of tree in $(BUILD).
#
#   make                      build/: the module and the worker
#   make sanitize             build/asan/: both with AddressSanitizer and UBSan
#                             (the same as make BUILD=build/asan SANITIZE=1);
#                             scripts/test --sanitize runs the suites against them,
#                             see docs/sanitizers.md

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

MODULE_SRC := config ngx_http_chathistory_module.c $(wildcard src/*.c src/*.h src/common/*.c src/common/*.h src/audio/*.c src/audio/*.h)
WORKER_SRC := $(wildcard src/worker/*.c src/common/*.c)
WORKER_HDR := $(wildcard src/worker/*.h src/common/*.h)

.PHONY: all module worker clean test up down sanitize

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
	    $(shell pkg-config --cflags libcjson libcurl) $(LDFLAGS) \
	    -o $@ $(WORKER_SRC) -L$(PG_LIB) -lpq \
	    $(shell pkg-config --libs libcjson libcurl) -lm

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
