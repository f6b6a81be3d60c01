# The one Switchboard image: every platform service, chosen by the command (`switchboard-service media`,
# or `python -m services.media` as the chart and the Pulumi program run it). Build from the repository root:
#   docker build -t ghcr.io/switchboard-cc/switchboard:0.1.0 .
# The tag is the version in pyproject.toml, Chart.yaml's appVersion and both artefacts' default `image.tag`
# (tests/unit/infra/test_dockerfile.py keeps them equal and builds the same virtualenv outside a container).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- build: the lock file's runtime set (no dev extra) into /app/.venv, the project installed non-editable --
FROM ${PYTHON_IMAGE} AS build
# The same uv as `make setup` (Makefile UV_VERSION): it reads uv.lock and refuses a stale one (--locked).
RUN pip install --no-cache-dir uv==0.13.9
ENV UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1
WORKDIR /src
# Dependencies first: this layer is reused while only the sources change.
COPY pyproject.toml uv.lock README.md ./
COPY sdk/pyproject.toml sdk/pyproject.toml
RUN uv sync --locked --no-install-project --no-install-workspace --python /usr/local/bin/python3
COPY sdk sdk
COPY cli cli
COPY services services
RUN uv sync --locked --no-editable --python /usr/local/bin/python3

# -- native: the media path's per-packet modules compiled with mypyc (docs/media.md "Compiled per-packet
# Python"). Its own stage, so that gcc, mypy and setuptools stay out of the image: only the compiled files
# (/app/native, with the manifest of the sources they were built from) reach the runtime stage.
FROM build AS native
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
RUN uv sync --locked --no-editable --extra native --python /usr/local/bin/python3
RUN SB_MEDIA_NATIVE_DIR=/app/native /app/.venv/bin/python -m services.media.native_build \
    && test -f /app/native/manifest.json

# -- runtime: the virtualenv alone, as an unprivileged user ----------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="switchboard" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.description="Switchboard contact center platform services"
# uid/gid 10001: what the chart and the Pulumi program run as (runAsUser, fsGroup).
RUN groupadd --system --gid 10001 switchboard \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/switchboard --no-create-home \
       --shell /usr/sbin/nologin switchboard \
    && mkdir -p /var/lib/switchboard \
    && chown 10001:10001 /var/lib/switchboard
COPY --from=build /app/.venv /app/.venv
COPY --from=native /app/native /app/native
ENV PATH=/app/.venv/bin:$PATH \
    SB_MEDIA_NATIVE_DIR=/app/native \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SB_DATA_DIR=/var/lib/switchboard \
    SB_BIND_HOST=0.0.0.0 \
    SB_LOG_FORMAT=json
WORKDIR /var/lib/switchboard
USER 10001:10001
EXPOSE 8080/tcp 5060/udp 5060/tcp
ENTRYPOINT ["switchboard-service"]
CMD ["--help"]
