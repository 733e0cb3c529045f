"""The notifier as a process: signals that stop it gently, its log lines, its metrics outlets.

``serve()`` runs a :class:`webapp.notify.notifier.Notifier` until SIGTERM or SIGINT: the attempt in
flight finishes (a second signal does not wait), the state is saved, and the command exits 0.
No Flask.
"""

import contextlib
import logging
import signal
import threading
import time

from webapp.notify.notifier import LOG, Notifier, StopRequested

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def serve(notifier: Notifier, *, metrics_port=None, metrics_file=None) -> None:
    """Run ``notifier`` until SIGTERM or SIGINT (then return: exit 0), with its metrics."""
    server, started = None, False
    with stop_signals():
        try:
            if metrics_port is not None or metrics_file is not None:
                from webapp.notify import metrics as notify_metrics

                registry = notify_metrics.registry_for(notifier.snapshot)
                if metrics_port is not None:
                    server = notify_metrics.serve(metrics_port, registry, notifier.alive)
                if metrics_file is not None:
                    notifier.after_check = notify_metrics.MetricsFile(metrics_file, registry)
                    notifier.after_check.check()
            notifier.start()
            started = True
            notifier.run()
        except StopRequested:
            LOG.info("stopping: finishing the attempts in flight")
        finally:
            notifier.stop()
            try:
                notifier.close(grace=notifier.timeout + 1)
            except StopRequested:  # a second signal: do not wait
                LOG.warning("stopping at once: the attempts in flight will be posted again")
            with contextlib.suppress(StopRequested):
                if server is not None:
                    server.shutdown()
                    server.server_close()
                notifier.state.close()
                if started:  # a refusal at start is the one Error: line, nothing above it
                    LOG.info("stopped")


@contextlib.contextmanager
def stop_signals():
    """Turn SIGTERM and SIGINT into :class:`StopRequested` in the main thread while inside.

    Raising, rather than setting a flag from the handler, ends any wait at once and takes no
    lock inside a signal handler (the main thread may hold it).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise StopRequested

    previous = {number: signal.signal(number, handler) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, action in previous.items():
            signal.signal(number, action)


class TerminalSafeFormatter(logging.Formatter):
    """Log lines with what a terminal could act on escaped (``\\x1b``): messages carry stored
    text, paths and answers of receivers (another tool's column names, a redirect's reason)."""

    def formatMessage(self, record):  # noqa: N802 (logging's name)
        from webapp.core.text import terminal_safe

        return terminal_safe(super().formatMessage(record))


def logging_to_stderr():
    """Log ``pipeline.notify`` lines on stderr, each with its UTC time, while inside."""
    from webapp.core.events import logger_on_stderr

    formatter = TerminalSafeFormatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime
    return logger_on_stderr(LOG.name, formatter)
