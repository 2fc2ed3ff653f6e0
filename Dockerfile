# syntax=docker/dockerfile:1
# The gateway as a container: `docker build -t llm-gateway .` then
# `docker run -p 8000:8000 -e OPENAI_API_KEY=... llm-gateway`.

# Build: the runtime dependencies, pinned by constraints.txt, into a virtual environment.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /build
COPY pyproject.toml constraints.txt README.md ./
COPY app/ app/
COPY providers/ providers/
RUN python -m venv /venv \
 && /venv/bin/pip install -c constraints.txt . \
 && /venv/bin/pip uninstall -y llm-gateway

# Run: the environment, the code and the contract; no compilers, no tests, no caches.
FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /srv/gateway --shell /usr/sbin/nologin gateway \
 && mkdir -p /data && chown gateway /data
COPY --from=build /venv /venv
WORKDIR /srv/gateway
COPY --chown=gateway openapi.yaml ./
COPY --chown=gateway app/ app/
COPY --chown=gateway providers/ providers/
ENV PATH=/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 \
    PORT=8000 \
    DATABASE_URL=sqlite:////data/conversations.db
USER gateway
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8000') + '/health', timeout=2)"]
CMD ["python", "-m", "app"]
