# syntax=docker/dockerfile:1
# VTP: one aiohttp process serving the REST API, WebSocket signalling and the SFU.
#
#   docker build -t vtp .
#   docker run --rm -p 8080:8080 -v vtp-state:/var/lib/vtp vtp     # embedded defaults
# or, with PostgreSQL, Redis and MinIO: `docker-compose up -d` (docker-compose.yml).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: a virtual environment with VTP and its dependencies -------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# gcc: the SFU's send path (vtp/sfu/fastpath) is a small C extension built by cffi.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app

# Dependencies first, in a layer of their own that is rebuilt only when
# pyproject.toml changes (a placeholder package stands in for the source).
COPY pyproject.toml ./
RUN mkdir vtp && touch vtp/__init__.py README.md \
    && pip install . \
    && pip uninstall -y vtp \
    && rm -rf vtp README.md build ./*.egg-info

# The source. An editable install keeps the package beside sql/ (migrations) and
# static/, which VTP finds relative to its source folder; it compiles the C send path
# into vtp/sfu/fastpath/.
COPY . .
RUN pip install --no-deps -e . \
    && python -m compileall -q vtp \
    && vtp --version

# --- runtime: slim, non-root --------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="VTP" \
      org.opencontainers.image.description="Virtual teaching platform with its own WebRTC SFU" \
      org.opencontainers.image.licenses="AGPL-3.0-or-later"

RUN groupadd --system --gid 10001 vtp \
    && useradd --system --uid 10001 --gid vtp --home-dir /var/lib/vtp --no-create-home \
       --shell /usr/sbin/nologin vtp \
    && mkdir -p /var/lib/vtp \
    && chown vtp:vtp /var/lib/vtp

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /app /app

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VTP_HOST=0.0.0.0 \
    VTP_PORT=8080 \
    VTP_STATE_DIR=/var/lib/vtp \
    VTP_LOG_FORMAT=json \
    VTP_ICE_UDP_PORT=40000

WORKDIR /app
USER vtp:vtp
# Embedded PostgreSQL data, local objects and the generated JWT secret live here when
# no external service is configured.
VOLUME ["/var/lib/vtp"]

# HTTP: REST API, WebSocket signalling, /health and /ready.
EXPOSE 8080
# WebRTC media: UDP, every peer connection on the one port VTP_ICE_UDP_PORT (the SFU
# is an ICE-lite agent there), and ICE over TCP on the same port number for networks
# that drop UDP. Publish both (`-p 40000:40000/udp -p 40000:40000/tcp`) and set
# VTP_ICE_ANNOUNCE_ADDRESS to the address clients reach the host on, since the
# container's own address is not reachable from outside. Alternatives: host
# networking, or a TURN server (VTP_TURN_URLS / VTP_TURN_SECRET).
EXPOSE 40000/udp 40000/tcp

HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('VTP_PORT', '8080'), timeout=4)"]

# aiohttp shuts down gracefully on SIGTERM (docker stop).
CMD ["vtp", "serve"]
