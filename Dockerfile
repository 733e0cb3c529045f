# Pipeline Manager: the dashboard (gunicorn) and the command line in one image.
#   docker compose up -d                                        # serve on :8000
#   docker compose run --rm pipeline-manager flask pipeline get  # the same image runs the CLI
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FLASK_APP=webapp \
    PIPELINE_DB=/data/sensor_data.db \
    PIPELINE_BIND=0.0.0.0:8000 \
    WEB_CONCURRENCY=2

WORKDIR /app

# Dependencies from the lock first, so editing templates does not reinstall them.
# An editable (compat) install keeps templates/ and static/ beside webapp/, where the app looks.
COPY pyproject.toml constraints.txt README.md ./
COPY webapp/ webapp/
RUN pip install -c constraints.txt --config-settings editable_mode=compat -e . \
    && python -m compileall -q webapp
# (Bytecode compiled at build: the root filesystem is read-only at run time, and every
# start of the command line would otherwise recompile our modules.)

COPY gunicorn.conf.py ./
COPY templates/ templates/
COPY static/ static/

# A fixed numeric uid, so Kubernetes' runAsNonRoot can verify it; give it the data directory.
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent pipeline \
    && mkdir -p /data /app/instance && chown pipeline:pipeline /data /app/instance
USER 10001:10001
VOLUME ["/data"]

EXPOSE 8000

# slim has no curl: ask /healthz with the Python that is already there.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD python -c "import os, urllib.request; port = os.environ.get('PIPELINE_BIND', ':8000').rsplit(':', 1)[1]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"

# No ENTRYPOINT: `docker run IMAGE flask pipeline get` runs exactly that command.
CMD ["python", "-m", "gunicorn", "-c", "gunicorn.conf.py", "webapp:create_app()"]
