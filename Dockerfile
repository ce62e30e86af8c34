# syntax=docker/dockerfile:1
# The Learnosity → Kafka connector image. Two stages: wheels are built in the first, and
# the second installs them into a virtual environment without ever holding the wheels,
# a compiler or pip. Build it with BuildKit (the default since Docker 23):
#
#   docker build --build-arg VCS_REF=$(git rev-parse HEAD) \
#       --build-arg BUILD_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ) -t learnosity-connector:0.1.0 .
#
# The base is pinned by tag; pin it by digest in your registry mirror (see
# tools/checkov-waivers.yaml). tests/integration/test_install.py repeats these steps.

FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY connector/ connector/
# The project's wheel and every dependency's, so the runtime stage installs offline.
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim AS runtime
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
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim"

# Nothing is written at run time but /tmp (mount a writable volume there when the root
# filesystem is read-only); bytecode is compiled at install, so imports write nothing.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    TMPDIR=/tmp

# The wheels are bind-mounted from the build stage, so no layer keeps them. pip,
# setuptools and wheel are removed afterwards: the running image needs none of them.
# The user has a fixed numeric UID so Kubernetes can verify runAsNonRoot.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    groupadd --system --gid 10001 connector \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin connector \
    && python -m venv --without-pip /opt/venv \
    && python -m pip --python /opt/venv/bin/python install --no-cache-dir --no-index \
        --find-links=/wheels "learnosity-kafka-connector==${VERSION}" \
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
