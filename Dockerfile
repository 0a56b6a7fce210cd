# jambadocs: the web UI + HTTP API (`jambadocs serve`) on a GPU host.
# Build:  docker compose build        Run: docker compose up -d        (see docker-compose.yml)
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/jambadocs

# torch first, pinned (the Linux wheel from PyPI carries its CUDA runtime; the host gives the driver),
# so the heavy layer is cached across code changes.
RUN pip install "torch==2.13.0"

# A C compiler: the engine builds its CPU kernels (engine/csrc/) on first use; without one it
# decodes on torch ops, about 2x slower on a CPU, and prefill attention and scan are slower too
# (a GPU does not use them).
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

COPY pyproject.toml README.md ./
COPY app ./app
COPY engine ./engine
COPY ingest ./ingest
COPY ui ./ui
RUN pip install .

RUN useradd --create-home --uid 1000 jambadocs \
    && mkdir -p /data /models \
    && chown jambadocs:jambadocs /data /models
USER jambadocs

# Configuration by environment (every JAMBADOCS_* variable of app/config.py works here).
# Inside the container the server listens on all interfaces; docker-compose.yml publishes it
# on the host's loopback only unless told otherwise, and JAMBADOCS_AUTH sets a password.
ENV JAMBADOCS_DATA_DIR=/data \
    JAMBADOCS_MODELS_DIR=/models \
    JAMBADOCS_HOST=0.0.0.0 \
    JAMBADOCS_PORT=7860 \
    HF_HOME=/models/.hf-cache \
    HF_HUB_DISABLE_TELEMETRY=1 \
    GRADIO_ANALYTICS_ENABLED=False

VOLUME ["/data", "/models"]
EXPOSE 7860

# /api/health answers without auth (app/api.py).
HEALTHCHECK --interval=30s --timeout=10s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:7860/api/health', timeout=8).status == 200 else 1)"]

ENTRYPOINT ["jambadocs"]
CMD ["serve"]
