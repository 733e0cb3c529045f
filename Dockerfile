# Pipeline Manager: the dashboard (gunicorn) and the command line in one image.
#   docker compose up -d                                           # serve on :8000
#   docker compose run --rm pipeline-manager pipeline-manager get  # the same image runs the CLI
#   docker run --rm -v /var/lib/sensor/data:/data IMAGE pipeline-manager --db /data/sensor_data.db set filtered --by ops --reason "Enable anomaly filtering"
# The data directory must be writable by uid or gid 10001 (deploy/README.md).
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
# An editable (compat) install keeps templates/ and static/ beside webapp/, where the app looks;
# it also puts the `pipeline-manager` console script on PATH (/usr/local/bin).
COPY pyproject.toml constraints.txt README.md ./
COPY webapp/ webapp/
RUN pip install -c constraints.txt --config-settings editable_mode=compat -e . \
    && python -m compileall -q webapp
# (Bytecode compiled at build: the root filesystem is read-only at run time, and every
# start of the command line would otherwise recompile our modules.)

COPY gunicorn.conf.py ./
COPY templates/ templates/
COPY static/ static/

# A fixed numeric uid AND gid, 10001:10001, so Kubernetes' runAsNonRoot can verify the user and a
# host directory can be shared with the group (`useradd --user-group` would pick a gid like 999).
# No login shell, no home. The image's /data (and so a new named volume) belongs to 10001.
RUN groupadd --system --gid 10001 pipeline \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin pipeline \
    && mkdir -p /data /app/instance \
    && chown 10001:10001 /data /app/instance
USER 10001:10001
VOLUME ["/data"]

EXPOSE 8000

# slim has no curl: ask /healthz with the Python that is already there. Exec form: no shell
# between Docker and the check (the port comes from PIPELINE_BIND, read by Python itself).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('PIPELINE_BIND', ':8000').rsplit(':', 1)[1]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4)"]

# No ENTRYPOINT: `docker run IMAGE pipeline-manager get` runs exactly that command.
CMD ["python", "-m", "gunicorn", "-c", "gunicorn.conf.py", "webapp:create_app()"]
