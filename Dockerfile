# syntax=docker/dockerfile:1.7
#
# One image for every camcount role; the role is the command:
#   camcount provision | stack up | ingest ... | infer | count | models ...
#
#   docker build -t camcount .
#   docker build --build-arg BASE_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04 \
#                --build-arg CUDA_WHEELS=0 -t camcount:cuda .
#
# Default base python:3.11-slim: the CUDA and cuDNN user-space libraries come from NVIDIA's pip wheels
# (onnxruntime-gpu[cuda,cudnn]; models.runtime preloads them), the driver from the NVIDIA container toolkit at run time (the host
# driver must support the CUDA major version onnxruntime-gpu was built for). A nvidia/cuda *-cudnn-runtime
# base brings those libraries from the OS instead (CUDA_WHEELS=0); it must ship python3 >= 3.11
# (Ubuntu 24.04 does; python3-venv is installed here when missing).
#
# The build needs network access to PyPI (dependencies) and to the Darknet release
# (`camcount models import-darknet --default` bakes the default YOLOv4-tiny model into the image).

ARG BASE_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN set -eux; \
    if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then \
        apt-get update; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    python3 -c 'import sys; assert sys.version_info >= (3, 11), sys.version'

# ---------------------------------------------------------------------------------------------------------
FROM base AS build
ARG CUDA_WHEELS=1
RUN python3 -m venv /opt/venv && pip install --upgrade pip
WORKDIR /src
COPY . /src
# config/ may be empty (git keeps no empty folders): make sure the runtime stage can copy it.
RUN set -eux; \
    mkdir -p /src/config; \
    pip install /src; \
    if [ "${CUDA_WHEELS}" = "1" ]; then \
        ort="$(python -c 'import importlib.metadata as m; print(m.version("onnxruntime-gpu"))')"; \
        pip install "onnxruntime-gpu[cuda,cudnn]==${ort}"; \
    fi; \
    camcount --help >/dev/null
# The ClickHouse DDL and ground truth are package data of the installed wheel (infra/, benchmarks/): check
# that `camcount provision` will find them. Run from / so `python -c` imports the installed package, not /src.
RUN set -eux; \
    cd /; \
    python -c 'from foundation.clickhouse import CLICKHOUSE_DDL_DIR as d; assert sorted(d.glob("*.sql")), d; \
assert not str(d).startswith("/src"), d'

# ---------------------------------------------------------------------------------------------------------
# The default model, imported once at build time into a registry directory the runtime image ships.
FROM build AS models
ENV CAMCOUNT_HOME=/tmp/camcount-build \
    CAMCOUNT_MODEL__REGISTRY=/opt/camcount/models
RUN camcount models import-darknet --default

# ---------------------------------------------------------------------------------------------------------
FROM base AS runtime
LABEL org.opencontainers.image.title="camcount" \
      org.opencontainers.image.description="Kafka-native people and vehicle counting on camera streams" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN set -eux; \
    groupadd --system --gid 10001 camcount; \
    useradd --system --uid 10001 --gid camcount --home-dir /var/lib/camcount --create-home \
        --shell /usr/sbin/nologin camcount
COPY --from=build /opt/venv /opt/venv
# Owned by camcount so a named volume mounted here (compose: `models`) starts as a writable copy of the
# image's registry: `camcount models ...` can add versions and move aliases at run time.
COPY --from=models --chown=camcount:camcount /opt/camcount/models /opt/camcount/models
WORKDIR /app
# The default camera config (a relative path from /app).
COPY --from=build /src/config /app/config
ENV CAMCOUNT_HOME=/var/lib/camcount \
    CAMCOUNT_MODEL__REGISTRY=/opt/camcount/models
USER camcount:camcount
# 9400: infer metrics/health (CAMCOUNT_INFERENCE__METRICS_PORT); 6066: count web (CAMCOUNT_COUNTING__WEB_PORT)
EXPOSE 9400 6066
ENTRYPOINT ["camcount"]
CMD ["--help"]
