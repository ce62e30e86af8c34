# syntax=docker/dockerfile:1
# The Learnosity → Kafka connector image. Two stages: wheels are gathered and built in the
# first, and the second installs them into a virtual environment without ever holding the
# wheels, a compiler or pip. Build it with BuildKit (the default since Docker 23):
#
#   docker build --build-arg VCS_REF=$(git rev-parse HEAD) \
#       --build-arg BUILD_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ) -t learnosity-connector:0.1.0 .
#
# Nothing is resolved at build time. The base is pinned by digest. Tag: python:3.11-slim
# (Python 3.11.16, Debian 13 "trixie"); digest: the multi-platform index that
# docker-library/repo-info recorded for that tag (repos/python/remote/3.11-slim.md at
# commit 62e42744, image built 2026-08-13). The tag moves with every rebuild: to take a
# newer one, put what `docker buildx imagetools inspect python:3.11-slim` prints in both
# FROM lines and the base.digest label. Every Python package comes from requirements.lock
# (the runtime) or requirements-build.lock (the wheel's build backend), each at a pinned
# version with its sha256 (tools/lock.sh regenerates them from pyproject.toml;
# tests/unit/test_lock.py keeps them in step). tests/integration/test_install.py repeats
# these steps.

FROM python:3.11-slim@sha256:a630a63cdb314e2d138a2fca3e375e319e8568346ffafac5b980f888630ac4f1 AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements.lock requirements-build.lock ./
# Every runtime dependency as a wheel, checked against the lock's hashes (binary only: a
# source build would run code the lock does not pin), so the runtime stage installs
# offline; and the build backend at its lock's versions, since the project's wheel is
# built without build isolation (which would fetch the newest setuptools).
RUN python -m pip download --no-cache-dir --require-hashes --only-binary=:all: --no-deps \
        --dest /wheels -r requirements.lock \
    && python -m pip install --no-cache-dir --require-hashes --only-binary=:all: \
        -r requirements-build.lock
COPY pyproject.toml README.md ./
COPY connector/ connector/
RUN python -m pip wheel --no-cache-dir --no-deps --no-build-isolation --wheel-dir /wheels .

FROM python:3.11-slim@sha256:a630a63cdb314e2d138a2fca3e375e319e8568346ffafac5b980f888630ac4f1 AS runtime
# VERSION is held equal to connector.__version__ by the tests; the other two are stamped
# by CI into the OCI labels.
ARG VERSION=0.1.0
ARG VCS_REF=unknown
ARG BUILD_DATE=unknown
LABEL org.opencontainers.image.title="learnosity-connector" \
      org.opencontainers.image.description="Streams Learnosity learner session scores into Kafka, exactly once." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim" \
      org.opencontainers.image.base.digest="sha256:a630a63cdb314e2d138a2fca3e375e319e8568346ffafac5b980f888630ac4f1"

# Nothing is written at run time but /tmp (mount a writable volume there when the root
# filesystem is read-only); bytecode is compiled at install, so imports write nothing.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    TMPDIR=/tmp

# The wheels and the lock are bind-mounted from the build stage, so no layer keeps them.
# The dependencies are installed from the lock, hashes checked again; the project's own
# wheel then adds nothing (--no-deps), and `pip check` proves the set complete. pip,
# setuptools and wheel are removed afterwards: the running image needs none of them.
# The user has a fixed numeric UID so Kubernetes can verify runAsNonRoot.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    --mount=type=bind,from=build,source=/src/requirements.lock,target=/requirements.lock \
    groupadd --system --gid 10001 connector \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin connector \
    && python -m venv --without-pip /opt/venv \
    && python -m pip --python /opt/venv/bin/python install --no-cache-dir --no-index \
        --find-links=/wheels --require-hashes -r /requirements.lock \
    && python -m pip --python /opt/venv/bin/python install --no-cache-dir --no-index \
        --find-links=/wheels --no-deps "learnosity-kafka-connector==${VERSION}" \
    && python -m pip --python /opt/venv/bin/python check \
    && python -m pip uninstall --yes pip setuptools wheel

USER 10001:10001
EXPOSE 8080
# For docker and compose; Kubernetes uses the chart's probes on the same endpoint.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('HTTP_PORT', '8080') + '/healthz', timeout=4)"]
# Exec form: the connector is PID 1 and receives SIGTERM itself, then commits or aborts
# its open transaction within SHUTDOWN_TIMEOUT_SECONDS.
ENTRYPOINT ["/opt/venv/bin/learnosity-connector"]
CMD ["run"]
