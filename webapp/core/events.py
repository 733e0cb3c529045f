"""What the store reports as it works: write-contention counters and the audit log. No Flask.

Counters are per process; listeners (the web's metrics) are told of each increment so that
gunicorn workers can sum them. The audit log is one JSON line per change we wrote.
"""

import _thread
import contextlib
import json
import sys

from webapp.core.changes import Change, audit_record
from webapp.core.text import json_terminal_safe

#: Per-process counters of write contention.
STATS = {"write_retries": 0, "busy_failures": 0}
_lock = _thread.allocate_lock()  # (not threading, nor logging below: CLI start-up time)
_listeners = []

#: The logger of one JSON line per change (who, from, to, reason, source, id).
AUDIT_LOGGER = "pipeline.audit"


def on_stat(listener) -> None:
    """Call ``listener(name)`` each time a ``STATS`` counter grows."""
    if listener not in _listeners:
        _listeners.append(listener)


def bump(name: str) -> None:
    with _lock:
        STATS[name] += 1
    for listener in _listeners:
        listener(name)


def log_change(change: Change) -> None:
    """Log ``change`` as one JSON line on ``pipeline.audit`` (after its commit: it happened)."""
    import logging

    audit = logging.getLogger(AUDIT_LOGGER)
    if audit.isEnabledFor(logging.INFO):
        line = json.dumps(audit_record(change), ensure_ascii=False, allow_nan=False)
        audit.info(json_terminal_safe(line))  # logs are read on terminals: no raw C1 or bidi


@contextlib.contextmanager
def logger_on_stderr(name: str, formatter=None):
    """Send logger ``name``'s INFO lines to stderr while inside (stdout stays the answer)."""
    import logging

    logger = logging.getLogger(name)
    handler = logging.StreamHandler(sys.stderr)
    if formatter is not None:
        handler.setFormatter(formatter)
    saved_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved_level)
