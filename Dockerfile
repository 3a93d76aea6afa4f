# The chatbot app: python -m chatbot serve on :8000 as a non-root user. Used by docker-compose.yml.
#   docker build -t chatbot .      docker run -p 8000:8000 chatbot
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OPENBLAS_NUM_THREADS=1 \
    OMP_NUM_THREADS=1

# A fixed numeric uid/gid, so orchestrators that insist on runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 chatbot \
 && useradd --system --uid 10001 --gid chatbot --home-dir /app --no-create-home --shell /usr/sbin/nologin chatbot

WORKDIR /app

# Dependencies first (a layer that survives source edits): install the project with an empty package, then
# drop it; the real source is installed below without touching the dependencies. README.md* (the metadata
# reads it when present) is a glob so a checkout without it still builds.
COPY pyproject.toml README.md* ./
RUN mkdir chatbot && touch chatbot/__init__.py \
 && pip install . \
 && pip uninstall -y chatbot \
 && rm -rf chatbot build chatbot.egg-info

COPY chatbot ./chatbot
RUN pip install --no-deps . && rm -rf build chatbot.egg-info

# Prompts and the bundled user guide (ingested at start when the collection is empty) live beside the code.
COPY prompts ./prompts
COPY docs/guide ./docs/guide
RUN mkdir -p /app/data && chown chatbot:chatbot /app/data

ENV CHATBOT_PROMPTS_DIR=/app/prompts \
    CHATBOT_DOCS_DIR=/app/docs/guide \
    CHATBOT_SERVER__PORT=8000

USER 10001:10001
EXPOSE 8000

# No curl in the slim image: probe /healthz with the interpreter that is there anyway.
HEALTHCHECK --interval=15s --timeout=5s --start-period=90s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('CHATBOT_SERVER__PORT', '8000') + '/healthz', timeout=4)"]

# SIGTERM drains: running answers get server.shutdown_seconds to finish (compose stop_grace_period is longer).
CMD ["python", "-m", "chatbot", "serve", "--host", "0.0.0.0"]
