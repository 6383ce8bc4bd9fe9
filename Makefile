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

DIST        := dist
DEB_VERSION ?= $(shell scripts/version.sh)
NFPM        := github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2

.PHONY: all build deps demo-deps check fmt-check vet promtool test scripts-test deb-check unit-security e2e-if-possible fuzz soak demo bench footprint deb e2e screenshots clean

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
check: deps fmt-check vet unit-security promtool test scripts-test deb-check e2e-if-possible

# unit-security fails when the daemon's unit exposes more than 2.0.
unit-security:
	@out=$$(systemd-analyze security --offline=true --threshold=20 systemd/pbx-agent.service 2>&1) || { \
		echo "$$out"; echo "systemd/pbx-agent.service: exposure above 2.0"; exit 1; }; \
	echo "$$out" | tail -n 1

# promtool checks the alert rules (promtool check rules, promtool test
# rules) and the metrics of a running, activated agent (promtool check
# metrics), installing Debian's prometheus package when promtool is missing.
promtool: build
	scripts/promtool-check.sh $(BIN)

fmt-check:
	@out=$$(gofmt -l $(GO_FILES)); if [ -n "$$out" ]; then \
		echo "gofmt: these files are not formatted (run gofmt -w):"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

test:
	$(GO) test -race -count=1 ./...

# scripts-test tests the build scripts: the package version sorts upward
# across commits and tags (dpkg --compare-versions, in a throwaway repository).
scripts-test:
	scripts/version_test.sh

# fuzz runs every fuzz target for FUZZTIME each (make fuzz FUZZTIME=10m,
# FUZZPAR=1 for one worker per target) and prints how long each ran and
# how many inputs it tried without a finding (docs/reliability.md).
fuzz:
	FUZZTIME=$(FUZZTIME) GO=$(GO) scripts/fuzz.sh

# soak runs the reliability suite (docs/reliability.md) at its larger
# settings: 300 kills (100 more while commands run), a 60 s fault storm, a minute of load on the local
# API, 100,000 agents in the herd, portal answers past the timeout. The
# same tests run at a CI size in `make check`.
SOAK_RUN := Crash|Storm|Backoff|SlowPortal|Abuse|Herd|Tamper|Replays|Edited|StateFolder|PortalGone|ClockSetBack|CommandsSurviveSIGKILL|CommandsRefused
soak:
	PBX_SOAK=1 $(GO) test -count=1 -timeout 60m -v -run '$(SOAK_RUN)' \
		./integration/ ./agent/ ./pkg/protocol/ ./pkg/state/

# bench measures pbx-agent beside node_exporter, mender-client and the
# baselines of the go test benchmarks, in one run, prints one table of
# figures and ratios and writes it to docs/performance.md. It installs the
# Debian packages it compares against; about 5 minutes.
bench:
	scripts/bench.sh

# footprint finds where the daemon's bytes go: its binary's size by module,
# and the size and idle memory of a do-nothing program linking each chosen
# library (internal/tools/footprint). It rewrites the "Where the bytes go"
# section of docs/performance.md and of its template; about a minute.
footprint:
	GO=$(GO) $(GO) run ./internal/tools/footprint -update docs/performance.md,internal/tools/benchrig/performance.md.tmpl

# demo runs until interrupted, after checking its ports are free. deps.sh
# demo names a missing Debian package and installs it only as root without
# a terminal (as CI runs); otherwise it stops with the command to run.
demo: demo-deps build
	@scripts/demo.sh $(BIN)

# screenshots renders the status page of every state (the statuses of the
# golden files) in headless Chromium, Debian's chromium package, at 1000
# and 390 px wide: dist/screenshots/STATE-WIDTHpx.png. Not part of check.
screenshots:
	$(GO) run ./internal/tools/screenshots -out $(DIST)/screenshots

demo-deps:
	@scripts/deps.sh demo

# e2e boots a Debian 12 container with systemd (systemd-nspawn) and tests the
# .deb in it for real: units, D-Bus, polkit, restart, upgrade, purge. Root only.
e2e:
	scripts/e2e.sh

# e2e-if-possible runs the rig where the machine allows (root, and not told
# otherwise with E2E=0); CI always runs it.
e2e-if-possible:
	@if [ "$(E2E)" = 0 ]; then echo "e2e: skipped (E2E=0)"; \
	elif [ "$$(id -u)" != 0 ]; then echo "e2e: skipped (needs root; run make e2e as root)"; \
	else scripts/e2e.sh; fi

# PORTAL_ROOTS is the folder of the vendor's production portal root public
# keys (<kid>.pem) that a release embeds (packaging/portal-roots/README).
PORTAL_ROOTS ?= packaging/portal-roots

# deb builds dist/pbx-agent_<version>_amd64.deb with nfpm at a pinned version:
# a release build, whose portal root keys are those of PORTAL_ROOTS, linked
# into the binary; it fails when that folder holds none. `make build` is a
# development build, which trusts the keys of portal.keyring instead.
#
# Two runs on one commit give the same bytes: SOURCE_DATE_EPOCH is the
# commit's time, which dates the man pages and the files in the package;
# the binary is built without paths or a build id. The man pages, the
# completions (from the docgen build of pbx-agent, which the shipped binary
# does not carry), the copyright file and the changelog are generated here.
deb: export SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
deb:
	rm -rf $(DIST)/build && mkdir -p $(DIST)/build
	$(GO) run ./internal/tools/portalroots '$(PORTAL_ROOTS)' > $(DIST)/build/portal-roots
	CGO_ENABLED=0 $(GO) build -trimpath \
		-ldflags "-s -w -buildid= -X $(MODULE)/pkg/buildinfo.Version=$(DEB_VERSION) -X $(MODULE)/pkg/license.embeddedRoots=$$(cat $(DIST)/build/portal-roots)" \
		-o $(DIST)/build/pbx-agent ./cmd/pbx-agent
	$(GO) run -tags docgen ./cmd/pbx-agent docs --version '$(DEB_VERSION)' $(DIST)/build/docs
	gzip -9n $(DIST)/build/docs/man1/* $(DIST)/build/docs/man5/*
	set -o pipefail; $(GO) run ./internal/tools/changelog -version '$(DEB_VERSION)' packaging/changelog.md | gzip -9n > $(DIST)/build/changelog.gz
	GO=$(GO) $(GO) run ./internal/tools/copyright -header packaging/copyright.header ./cmd/pbx-agent > $(DIST)/build/copyright
	find $(DIST)/build -exec touch --no-dereference --date=@$$SOURCE_DATE_EPOCH {} +
	VERSION='$(DEB_VERSION)' $(GO) run $(NFPM) pkg \
		--config packaging/nfpm.yaml --packager deb --target $(DIST)/
	@ls -l $(DIST)/*.deb

# deb-check builds the .deb twice and checks the builds are identical, that
# lintian is clean, and (as root) that it installs into a separate root
# with DPKG_ROOT and purges keeping its users (scripts/deb-check.sh).
deb-check:
	scripts/deb-check.sh

clean:
	rm -rf $(BIN) $(DIST)
