# The bentohost runtime image: the C host and the bentohost package on a Python base.
#
#   docker build -t bentohost:0.1.0 .            # or: podman build / buildah bud
#   docker run --rm -p 3000:3000 --read-only --tmpfs /tmp \
#     -v "$PWD/examples/hello:/app:ro" bentohost:0.1.0     # serves /app (its service.py or bentofile.yaml)
#
# Build arguments: BASE_IMAGE (a Debian bookworm based Python 3.10+ image with pip; the
# build stage needs Python's headers), VERSION, REVISION, CREATED (the OCI labels).
# `python -m bentohost containerize` builds a project's image FROM this one.
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- build: the wheels
FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      gcc libc6-dev libuv1-dev libcjson-dev libyaml-dev libssl-dev node-llhttp \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY setup.py README.md ./
COPY csrc ./csrc
COPY bentohost ./bentohost
# bentohost's wheel (with the host linked to this Python) and those of its dependencies,
# so that the runtime stage installs without a compiler or the network.
RUN pip wheel --wheel-dir /wheels .

# ---------------------------------------------------------------- runtime
FROM ${BASE_IMAGE}
ARG BASE_IMAGE=python:3.11-slim-bookworm
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="bentohost" \
      org.opencontainers.image.description="Serves BentoML-style Python services from a C host: a supervisor (PID 1) and embedded-Python workers" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
# Only the host's runtime libraries (libssl3 is usually in the base already).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libuv1 libcjson1 libyaml-0-2 libssl3 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log
# The wheels are mounted, never copied: no layer keeps them.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    PIP_ROOT_USER_ACTION=ignore pip install --no-cache-dir --no-index --find-links /wheels \
      --disable-pip-version-check bentohost \
 && groupadd --gid 10001 bentohost \
 && useradd --no-log-init --uid 10001 --gid 10001 --home-dir /home/bentohost --create-home \
      --shell /usr/sbin/nologin bentohost
# A read-only root file system works (--read-only --tmpfs /tmp): bentohost writes only
# under $TMPDIR (the supervisor's runtime directory, request files), and Python writes
# no bytecode caches.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp \
    BENTOML_HOST=0.0.0.0 \
    BENTOML_PORT=3000
WORKDIR /app
USER 10001:10001
EXPOSE 3000
# `python -m bentohost serve` execs the C supervisor, which then is PID 1: it reaps every
# child (orphans of the service's code included) and drains on SIGTERM, exiting 0 when
# every in-flight request finished within --timeout-graceful-shutdown.
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "bentohost", "serve"]
CMD ["/app"]
