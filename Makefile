# camcount: `make demo` and `make test` do all set-up themselves, idempotently (skipping what is there).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CAMCOUNT_HOME ?= .camcount
FOOTAGE := $(CAMCOUNT_HOME)/data/vtest.avi
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := clickhouse-server clickhouse-client redis-server
export CAMCOUNT_HOME

.PHONY: install system-deps python-deps footage model demo test bench clean

install: system-deps python-deps footage model

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "==> installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends $$missing; \
	else echo "==> Debian packages present ($(APT_PACKAGES))"; fi

python-deps: $(STAMP)

$(STAMP): pyproject.toml
	@echo "==> Python environment in $(VENV)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@set -o pipefail; $(BIN)/pip install -q --disable-pip-version-check -e '.[test]' 2>&1 \
	  | { grep -v "^WARNING: Location 'file:///opt/pypi" || true; }
	@touch $@

footage: $(FOOTAGE)

# vtest.avi from Debian's opencv-doc, without installing the 96 MB package.
$(FOOTAGE):
	@echo "==> sample footage vtest.avi (Debian opencv-doc)"
	@mkdir -p $(dir $@)
	@tmp=$$(mktemp -d) && chmod 755 $$tmp && cd $$tmp && \
	  { apt-cache policy opencv-doc | grep -q 'Candidate: [0-9]' || $(SUDO) apt-get update -q; } && \
	  apt-get download -q opencv-doc 2>&1 | grep -v '^W: Download is performed unsandboxed' ; \
	  dpkg-deb --fsys-tarfile opencv-doc_*.deb | tar -x ./usr/share/doc/opencv-doc/examples/data/vtest.avi && \
	  mv usr/share/doc/opencv-doc/examples/data/vtest.avi $(CURDIR)/$@ && cd / && rm -rf $$tmp
	@test -s $@

model: python-deps
	@$(BIN)/camcount models import-darknet --default

demo: install
	@$(BIN)/camcount demo

test: install
	@CAMCOUNT_TEST_FOOTAGE=$(CURDIR)/$(FOOTAGE) $(BIN)/python -m pytest -q

bench: install
	@$(BIN)/camcount bench model --batch 1,8
	@$(BIN)/camcount bench pipeline

clean:
	-@$(BIN)/camcount stack down 2>/dev/null
	rm -rf $(CAMCOUNT_HOME)/stack
