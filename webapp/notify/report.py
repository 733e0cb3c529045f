"""One fleet report: its body (docs/fleet.md, "The report"), its signed headers, and what the
centre's answer means. The answer is believed only when signed with this node's key, within the
tolerance: it moves the node's position (``acknowledged_id``) and may carry a rollout. No Flask.
"""

import json
import time
from dataclasses import dataclass
from importlib import metadata

from webapp.accounts.signatures import SignatureError, new_message_id, sign, verify
from webapp.core.errors import PipelineError
from webapp.core.text import terminal_safe
from webapp.notify.webhooks import Answer, DeliveryFailed, json_safe

MAX_BODY = 1024 * 1024  # the centre refuses more (413)
MAX_CHANGES = 500
# The centre accepts nesting ≤ 32; a record's metadata sits 3 levels down (report, changes, record).
METADATA_ROOM = 28
MAX_TEXT = 64 * 1024  # characters of one field a report carries when a change alone is too large
MAX_NEXT_REPORT = 86400.0
MAX_ID = 2**63 - 1


def agent() -> str:
    """Return ``pipeline-manager/<version>`` (the centre shows which nodes run which release)."""
    try:
        return f"pipeline-manager/{metadata.version('pipeline-manager')}"
    except metadata.PackageNotFoundError:
        return "pipeline-manager/unknown"


class ReportInvalid(DeliveryFailed):
    """The centre calls the report malformed or too large (400, 413): a bug here, retried slowly."""


@dataclass(frozen=True)
class Acknowledgement:
    """What a signed 200 answer says."""

    acknowledged_id: int
    next_report_s: float
    server_time: str | None
    desired: dict | None


def record(change) -> dict:
    """Return a change as the report carries it: ``get --json``'s record, JSON-safe."""
    data = change.to_dict()
    data["metadata"] = json_safe(data["metadata"], METADATA_ROOM)
    return json_safe(data)


def current_record(store) -> dict:
    """Return the current record, or the error that keeps the database from giving one."""
    try:
        return record(store.current())
    except PipelineError as error:
        return error_record(error)


def error_record(error: PipelineError) -> dict:
    message = terminal_safe(str(error))[:500]
    return {"error": {"code": error.exit_code, "message": message}}


def body(target, seq: int, current: dict, changes: list, rollout=None) -> tuple[bytes, list]:
    """Return the report's bytes and the changes it carries: as many of ``changes`` as fit in
    MAX_BODY, at least one (a change too large alone has its long texts, then its metadata,
    cut: a foreign row's huge field must not hold back every later change)."""
    carried, cuts = changes[:MAX_CHANGES], iter((shortened, without_metadata))
    while True:
        report = {
            "node": target.node,
            "labels": target.labels,
            "interval_s": target.heartbeat,
            "agent": AGENT,
            "seq": seq,
            "current": current,
            "changes": carried,
            "accept_rollouts": target.accept_rollouts,
            "rollout": rollout,
        }
        data = json.dumps(report, allow_nan=False, separators=(",", ":")).encode("ascii")
        if len(data) <= MAX_BODY:
            return data, carried
        if len(carried) > 1:
            carried = carried[: len(carried) // 2]
            continue
        cut = next(cuts)  # two cuts always fit: the fields left are a few bounded texts
        carried, current = [cut(item) for item in carried], cut(current)


def without_metadata(record: dict) -> dict:
    """Return ``record`` with its metadata replaced by a note saying how large it was."""
    if "metadata" not in record:
        return record
    size = len(json.dumps(record["metadata"]))
    return {**record, "metadata": {"note": f"metadata too large to report ({size} bytes)"}}


def shortened(value):
    """Return ``value`` with each text longer than MAX_TEXT cut (a foreign row's huge field)."""
    if isinstance(value, dict):
        return {key: shortened(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shortened(item) for item in value]
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return value[: MAX_TEXT - 1] + "…"
    return value


def signed_headers(key: str, data: bytes) -> dict:
    """Return the headers of one attempt: JSON, and a signature made now (a retry signs anew)."""
    return {
        "Content-Type": "application/json",
        "User-Agent": AGENT,
        **sign(key, new_message_id(), int(time.time()), data),
    }


def newest_id(current: dict, carried: list) -> int:
    """Return the newest change id a report tells the centre of (0: none)."""
    ids = [item.get("id") for item in [current, *carried]]
    return max((value for value in ids if type(value) is int), default=0)


def acknowledgement(answer: Answer, key: str, sent: int) -> Acknowledgement:
    """Return what a 200 answer says, or raise DeliveryFailed naming why it is not one
    (``sent``: the webhook-timestamp the report was signed with)."""
    if answer.status in (400, 413):
        raise ReportInvalid(f"HTTP {answer.status}, the centre refuses the report: {said(answer)}")
    if answer.status == 401:
        raise DeliveryFailed(refusal_401(answer, sent))
    if answer.status != 200:
        raise DeliveryFailed(f"HTTP {answer.status} ({said(answer)})")
    try:
        verify(key, answer.headers, answer.body, time.time())
    except SignatureError as error:
        raise DeliveryFailed(
            f"the centre's answer is not signed with this node's key ({error.reason}: {error}); "
            "is --fleet the right centre?"
        ) from None
    document = strict_json(answer.body)
    ack, delay = document.get("acknowledged_id"), document.get("next_report_s", 0)
    if type(ack) is not int or not 0 <= ack <= MAX_ID or not number(delay):
        raise DeliveryFailed("the centre's answer holds no valid acknowledged_id/next_report_s")
    server_time = document.get("server_time")
    desired = document.get("desired")
    return Acknowledgement(
        ack,
        min(max(float(delay), 0.0), MAX_NEXT_REPORT),
        server_time if isinstance(server_time, str) else None,
        desired if isinstance(desired, dict) else None,
    )


def refusal_401(answer: Answer, sent: int) -> str:
    """Return the line a 401 is logged as; a skewed clock is named with the centre's time."""
    document = strict_json(answer.body, required=False)
    reason = document.get("reason")
    if reason == "timestamp_skew":
        server = document.get("server_timestamp")
        shown = terminal_safe(str(document.get("server_time", "?")))[:40]
        if number(server):
            skew = int(sent - server)
            return (
                f"HTTP 401, the centre refuses this node's clock: it is {skew:+d} s off the "
                f"centre's ({shown}); fix the clock (NTP)"
            )
        return f"HTTP 401, the centre refuses this node's clock (centre time {shown})"
    return (
        f"HTTP 401, the centre refuses the signature ({said(answer)}): is PIPELINE_FLEET_KEY "
        "this node's key, for this --node name?"
    )


def said(answer: Answer) -> str:
    """Return the reason and error an answer's JSON gives, shortened and safe to log."""
    document = strict_json(answer.body, required=False)
    parts = [document.get("reason"), document.get("error")]
    text = ": ".join(part for part in parts if isinstance(part, str)) or "no reason given"
    return terminal_safe(text)[:200]


def strict_json(data: bytes, required: bool = True) -> dict:
    """Return the JSON object ``data`` holds; {} (or DeliveryFailed when required) otherwise."""
    try:
        document = json.loads(data.decode("utf-8"), parse_constant=_refuse)
    except (ValueError, RecursionError):
        document = None
    if not isinstance(document, dict):
        if required:
            raise DeliveryFailed("the centre's answer is not a JSON object")
        return {}
    return document


def _refuse(constant):
    raise ValueError(f"{constant} is not JSON")


def number(value) -> bool:
    return type(value) in (int, float) and value == value and abs(value) < 1e15


AGENT = agent()
