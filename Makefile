# pbx-agent: build, test and demo. `make check` is what CI runs.
SHELL := /bin/bash

# Go lives at /usr/local/go on the project's machines; PATH may not say so.
export PATH := $(PATH):/usr/local/go/bin:$(HOME)/go/bin
GO ?= go

MODULE  := github.com/pbx-agent/pbx-agent
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -s -w -X $(MODULE)/pkg/buildinfo.Version=$(VERSION)
BIN     := bin
FUZZTIME ?= 30s

GO_FILES = $(shell find . -name '*.go' -not -path './.git/*')

.PHONY: all build deps check fmt-check vet test fuzz demo bench clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

# deps installs the Debian packages and Go modules the targets need.
deps:
	@scripts/deps.sh
	$(GO) mod download

# check is every test: formatting, vet, the tests under the race detector.
# `go test` also runs each fuzz target over its committed seeds
# (testdata/fuzz/FuzzXxx), so a past finding stays fixed.
check: deps fmt-check vet test

fmt-check:
	@out=$$(gofmt -l $(GO_FILES)); if [ -n "$$out" ]; then \
		echo "gofmt: these files are not formatted (run gofmt -w):"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

test:
	$(GO) test -race -count=1 ./...

# fuzz runs every fuzz target for FUZZTIME each (make fuzz FUZZTIME=10m).
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$target ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

demo: deps build
	@scripts/demo.sh $(BIN)

clean:
	rm -rf $(BIN)
