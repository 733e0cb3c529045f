"""``POST /api/fleet/report``: a node's signed report (docs/fleet.md, the protocol).

Everything is checked before anything is stored, cheapest first: the size (413 before the body
is read), strict JSON (400), the node's name, the signature with that node's derived key and
the timestamp (401), then every field (400). A refusal is one line of JSON with its reason,
counted in /metrics, and logged at most once a minute per node and reason (a node retries:
one log line per request would flood the log). A 200 answer is signed with the node's key.
"""

import json
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime

from flask import Blueprint, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from webapp.accounts.signatures import SignatureError, derive_node_key, new_message_id, sign, verify
from webapp.core.errors import PipelineError
from webapp.core.timefmt import iso

from . import metrics
from .db import get_store
from .report import MAX_BODY, ReportRefused, node_name, parse_body, read_report
from .rollouts.delivery import on_report as rollout_hook

bp = Blueprint("fleet_report", __name__, url_prefix="/api/fleet")

TOLERANCE_S = 300
LOG_EVERY_S = 60.0
LOG_MEMORY = 10_000  # (node, reason) pairs remembered for the log limit


class RefusalLog:
    """Log a refusal at most once per ``LOG_EVERY_S`` per (node, reason), in this process."""

    def __init__(self):
        self.last: OrderedDict = OrderedDict()
        self.lock = threading.Lock()

    def due(self, who: str, reason: str, now: float) -> bool:
        with self.lock:
            key = (who, reason)
            if now - self.last.get(key, -LOG_EVERY_S) < LOG_EVERY_S:
                return False
            self.last[key] = now
            self.last.move_to_end(key)
            while len(self.last) > LOG_MEMORY:
                self.last.popitem(last=False)
            return True


def answer(body: dict, status: int, key: str | None = None):
    """Return ``body`` as one line of JSON; signed with ``key`` when given."""
    data = json.dumps(body, separators=(",", ":")).encode()
    response = current_app.response_class(data, status, mimetype="application/json")
    if key is not None:
        response.headers.update(sign(key, new_message_id(), int(time.time()), data))
    return response


def refuse(reason: str, message: str, status: int, who: str, started: float, **extra):
    """Answer a refusal: counted, logged (at most once a minute per node and reason)."""
    metrics.count_refused(reason, time.perf_counter() - started)
    if current_app.extensions["fleet.refusal_log"].due(who, reason, time.monotonic()):
        current_app.logger.warning("fleet report from %s refused (%s): %s", who, reason, message)
    return answer({"error": message, "reason": reason, **extra}, status)


def server_time(now: float) -> dict:
    return {"server_time": iso(datetime.fromtimestamp(now, UTC)), "server_timestamp": int(now)}


def read_body() -> bytes:
    """Return the body, at most MAX_BODY bytes; RequestEntityTooLarge before reading more."""
    request.max_content_length = MAX_BODY  # the pages' 64 KiB limit is for forms
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise RequestEntityTooLarge()
    return request.get_data(cache=False)


@bp.post("/report")
def report():
    """Check a node's signed report, store it, answer its acknowledgement (signed)."""
    started = time.perf_counter()
    now = time.time()
    who = request.remote_addr or "unknown"
    secret = current_app.config.get("FLEET_SECRET")
    if not secret:
        message = current_app.config.get("FLEET_SECRET_PROBLEM") or (
            "the centre has no fleet secret (PIPELINE_FLEET_SECRET): it accepts no reports"
        )
        return refuse("unavailable", message, 503, who, started)
    try:
        try:
            raw = read_body()
        except RequestEntityTooLarge:
            message = f"the body is larger than {MAX_BODY} bytes"
            raise ReportRefused("too_large", message, 413) from None
        if request.mimetype != "application/json":
            raise ReportRefused("malformed_json", "send Content-Type: application/json")
        body = parse_body(raw)
        who = node_name(body)
        key = derive_node_key(secret, who)
        msg_id, timestamp = verify(key, request.headers, raw, now, TOLERANCE_S)
        checked = read_report(body)
    except ReportRefused as refusal:
        return refuse(refusal.reason, str(refusal), refusal.status, who, started)
    except SignatureError as error:
        return refuse(error.reason, str(error), 401, who, started, **server_time(now))
    try:
        ack = get_store().ingest(checked, msg_id, timestamp, hook=rollout_hook)
    except PipelineError as error:
        return refuse("unavailable", str(error), 503, who, started)
    metrics.count_accepted(ack.outcome, time.perf_counter() - started)
    body = {
        "acknowledged_id": ack.acknowledged_id,
        "next_report_s": ack.next_report_s,
        "server_time": server_time(now)["server_time"],
    }
    if ack.desired is not None:
        body["desired"] = ack.desired
    return answer(body, 200, key)


def init_app(app) -> None:
    app.extensions["fleet.refusal_log"] = RefusalLog()
    app.register_blueprint(bp)
