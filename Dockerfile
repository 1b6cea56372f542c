# syntax=docker/dockerfile:1
# One image for every sellmesh process; the command picks what runs:
#   sellmesh run ingest | agent | orders | payments | handoff | gateway, sellmesh migrate, sellmesh topics
#
# The base is pinned by digest, so a rebuild gets the same bytes. To update it (monthly, or for a CVE):
#   docker buildx imagetools inspect python:3.11-slim-bookworm --format '{{json .Manifest.Digest}}'
# then put the new digest in PYTHON_BASE below (both stages use it: the virtualenv is copied between
# them and must meet the same interpreter) and rebuild.
ARG PYTHON_BASE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

FROM ${PYTHON_BASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
# Dependencies first, so a code change does not reinstall them. Every file is checked against its
# SHA-256 in the lock; --no-deps because the lock is the whole closure; wheels only, so the image
# never needs a compiler.
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps --only-binary=:all: -r requirements.lock
COPY pyproject.toml ./
COPY schemas ./schemas
COPY sellmesh ./sellmesh
COPY services ./services
COPY migrations ./migrations
# Editable, like `make setup`: the runtime finds migrations/ next to the packages under /app.
RUN pip install --no-deps --no-build-isolation -e . \
    && python -m compileall -q /app/schemas /app/sellmesh /app/services

FROM ${PYTHON_BASE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    SELLMESH_HTTP_HOST=0.0.0.0 \
    SELLMESH_HTTP_PORT=8000 \
    SELLMESH_VAR_DIR=/var/lib/sellmesh \
    HOME=/var/lib/sellmesh
# The home is the var dir: the one writable place (an emptyDir under a read-only root in Kubernetes),
# for the libraries that keep a cache under $HOME.
RUN groupadd --system --gid 10001 sellmesh \
    && useradd --system --uid 10001 --gid sellmesh --no-create-home --home-dir /var/lib/sellmesh --shell /usr/sbin/nologin sellmesh \
    && install -d -o sellmesh -g sellmesh /var/lib/sellmesh
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
# Numeric, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000
# For plain `docker run`; Kubernetes and compose probe /healthz and /readyz themselves.
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["sellmesh", "--help"]
