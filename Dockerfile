# payops: one image for the API, the worker, the migration job and the sandbox bank.
#
#   docker build -t payops .
#   docker run payops                                  # the API (default CMD)
#   docker run payops payops worker                    # a Temporal worker (run N to scale out)
#   docker run payops payops migrate                   # apply the Alembic migrations
#   docker run payops python -m sandbox.bank --host 0.0.0.0 --port 8081
#
# Configuration is PAYOPS_* environment variables only (see .env.example / docs/configuration.md).
# docker-compose.yml wires the whole production-like topology.

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PAYOPS_DATA_DIR=/var/lib/payops

WORKDIR /app

# System Chromium for the PayShack portal sync (PAYOPS_CHROMIUM_PATH=/usr/bin/chromium) that
# the worker runs; `--build-arg WITH_CHROMIUM=false` for a smaller image without portal syncs.
ARG WITH_CHROMIUM=true
RUN if [ "$WITH_CHROMIUM" = "true" ]; then \
        apt-get update \
     && apt-get install -y --no-install-recommends chromium fonts-liberation \
     && rm -rf /var/lib/apt/lists/*; \
    fi

RUN groupadd --system --gid 10001 payops \
 && useradd --system --uid 10001 --gid payops --home-dir /var/lib/payops --create-home \
        --shell /usr/sbin/nologin payops

# Runtime dependencies first (from pyproject.toml only), so code changes reuse this layer.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# The project itself, without the dev extras. Installed in place (editable) because the
# migrations and alembic.ini are read from the source tree (core.platform.db.REPO_ROOT = /app).
COPY . .
RUN pip install --no-deps -e . \
 && python -c "import api.app, workers.main, cli.main, sandbox.bank"

USER payops

EXPOSE 8000

HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]

CMD ["uvicorn", "api.app:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000"]
