"""gunicorn settings for Pipeline Manager (`gunicorn -c gunicorn.conf.py 'webapp:create_app()'`).

Everything comes from the environment so the same image runs anywhere. No database connection is
opened here or at import time: each worker opens its own after the fork, on its first request.
"""

import os

bind = os.environ.get("PIPELINE_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "sync"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
keepalive = 5
accesslog = "-"  # stdout
errorlog = "-"  # stderr
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# Trust X-Forwarded-* only from a proxy on the same host (TLS terminated in front of us).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
