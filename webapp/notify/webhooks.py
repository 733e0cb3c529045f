"""One webhook: its URL checked, a label safe to log, a change's signed payload, one POST.

URLs often carry a token in their path, so nothing here prints one: logs, metrics and the state
file name a webhook by ``scheme://host`` and a short hash of the whole URL. urllib honours
``https_proxy`` and ``no_proxy``; the Standard Webhooks scheme is in signing.py. No Flask, no SQL.
"""

import base64
import hashlib
import hmac
import http.client
import json
import math
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from webapp.core.errors import InvalidInput
from webapp.core.pipelines import DEFAULT_PIPELINE, PIPELINE_TYPES
from webapp.core.text import describe, forbidden, terminal_safe
from webapp.core.timefmt import shown
from webapp.notify import signing
from webapp.notify.deadline import Deadline

TIMEOUT = 10.0  # seconds per connect and per read: a dead receiver never holds a thread longer
# A whole attempt (connect, send, answer) may take this many timeouts at most: a receiver that
# trickles its answer a byte at a time fails like any other, instead of holding its webhook.
ATTEMPT_TIMEOUTS = 3
MAX_FIELD = 300  # characters of one stored value shown in the `text` sentence
USER_AGENT = "pipeline-manager-notify/1"
MAX_ANSWER = 65536  # bytes of an answer read: a fleet centre's acknowledgement is far smaller
# Every printable ASCII character is left as it is; only what http.client refuses is quoted.
_ASCII = "".join(map(chr, range(0x21, 0x7F)))


class DeliveryFailed(Exception):
    """A post that was not acknowledged (no 2xx): the reason, safe to log."""


@dataclass(frozen=True)
class Webhook:
    """A webhook URL as we post to it, with a label and a state key that reveal no token."""

    url: str  # as configured: never logged
    target: str  # what urllib opens: no user info, non-ASCII percent-encoded
    authorization: str | None  # Basic credentials from ``https://user:pass@host/``
    label: str  # scheme://host[:port]#hash, for logs and metrics
    key: str  # SHA-256 of the URL, the state file's key
    signing: str = signing.PIPELINE  # how posts are signed: "pipeline" or "standard"


def parse_webhook(url: str, position: int = 1, where: str | None = None) -> Webhook:
    """Check ``url`` (http or https, a host, no whitespace or control character); raise
    :class:`InvalidInput` naming it by position (or ``where``) and host, never by its text."""
    scheme_choice = signing.PIPELINE
    if where is None:
        # ``standard+https://...`` asks for Standard Webhooks signing of a webhook's posts; the
        # URL itself is unchanged, so its label and state key stay the same either way.
        scheme_choice, url = signing.split_choice(url)
    where = where or f"webhook {position}"
    bad = next((char for char in url if char.isspace() or forbidden(char)), None)
    if bad is not None:
        raise InvalidInput(f"{where}: the URL holds {describe(bad)}; remove it")
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # "http://[::1": an unclosed IPv6 bracket
        raise InvalidInput(f"{where}: the URL is malformed (an unclosed [ in its host?)") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        got = f"{terminal_safe(scheme)}:" if scheme else "no scheme"
        raise InvalidInput(f"{where}: not an http:// or https:// URL (got {got})")
    if not parts.hostname:
        raise InvalidInput(f"{where}: the URL names no host")
    try:
        port = parts.port
    except ValueError:
        raise InvalidInput(f"{where}: the URL's port is not a number from 0 to 65535") from None
    try:
        host = parts.hostname.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidInput(f"{where}: the URL's host is not a valid name") from None
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal
    netloc = host if port is None else f"{host}:{port}"
    path = urllib.parse.quote(parts.path or "/", safe=_ASCII)
    query = urllib.parse.quote(parts.query, safe=_ASCII)
    target = urllib.parse.urlunsplit((scheme, netloc, path, query, ""))
    authorization = None
    if parts.username is not None:
        credentials = f"{urllib.parse.unquote(parts.username)}:"
        credentials += urllib.parse.unquote(parts.password or "")
        authorization = "Basic " + base64.b64encode(credentials.encode()).decode("ascii")
    digest = hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()
    label = f"{scheme}://{netloc}#{digest[:8]}"
    return Webhook(url, target, authorization, label, digest, scheme_choice)


def parse_webhooks(urls) -> list[Webhook]:
    """Return the webhooks of ``urls`` in order, each once (empty entries are skipped)."""
    webhooks, seen = [], {}
    # Only spaces are trimmed: a TAB, newline or U+2028 at an end is refused by parse_webhook.
    for position, url in enumerate((url.strip(" ") for url in urls if url.strip(" ")), 1):
        webhook = parse_webhook(url, position)
        if webhook.key in seen and seen[webhook.key] != webhook.signing:
            raise InvalidInput(f"webhook {position}: the same URL is listed with another signing")
        if webhook.key not in seen:
            seen[webhook.key] = webhook.signing
            webhooks.append(webhook)
    return webhooks


def split_setting(value) -> list[str]:
    """Return the URLs of ``PIPELINE_WEBHOOKS`` (comma-separated)."""
    # Spaces and line breaks around commas are the setting's layout; other characters stay.
    return [url.strip(" \t\r\n") for url in (value or "").split(",") if url.strip(" \t\r\n")]


# -- what is posted ----------------------------------------------------------------------------


def payload(change, previous) -> bytes:
    """Return the body posted for ``change``: its JSON record (as ``get --json`` prints it),
    ``previous`` (the type of the change before it) and a one-sentence ``text``.

    Strict JSON in ASCII: rows from other tools may hold bytes, odd floats or lone surrogates.
    """
    record = {**change.to_dict(), "previous": previous, "text": summary(change, previous)}
    return json.dumps(json_safe(record), allow_nan=False, separators=(",", ":")).encode("ascii")


def summary(change, previous) -> str:
    """Return one sentence for chat: what the pipeline is now, what it was, who, when, why."""
    now = _shown(change.type_label)
    if change.managed:
        now += f" (bucket {_shown(change.bucket)})"
    if previous is None:
        was = f"{DEFAULT_PIPELINE} (the default)"
    else:
        was = _shown(previous if previous in PIPELINE_TYPES else repr(previous))
    who = _shown(change.updated_by) if change.updated_by else "an unknown writer"
    via = f" via {_shown(change.source)}" if change.source else ""
    when = _shown(shown(change.updated_at, change.updated_at_text, "an unknown time"))
    text = f"Pipeline changed to {now}, was {was}: change #{change.id} by {who}{via} at {when}."
    if change.reason:
        text += f" Reason: {_shown(change.reason)}"
    return text


def _shown(value) -> str:
    """Stored text as chat shows it: one line, bounded, and no Slack control sequence.

    Slack reads ``<!channel>`` or ``<https://x|y>`` in ``text``; its documented escapes of
    ``&``, ``<`` and ``>`` keep a reason from pinging a channel or disguising a link.
    """
    text = terminal_safe(value.decode("utf-8", "replace") if isinstance(value, bytes) else value)
    if len(text) > MAX_FIELD:
        text = text[: MAX_FIELD - 1] + "…"
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def json_safe(value, room: int = 64):
    """Return ``value`` as strict JSON can carry it: blobs and lone surrogates replaced, odd
    floats as text, and containers more than ``room`` levels down replaced by a note."""
    if isinstance(value, dict | list | tuple) and room <= 0:
        return "(nested too deep to send)"
    if isinstance(value, dict):
        return {json_safe(str(key)): json_safe(item, room - 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item, room - 1) for item in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str) and not value.isascii():
        return value.encode("utf-8", "replace").decode("utf-8")  # a lone surrogate becomes "?"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def signature(secret: str, body: bytes) -> str:
    """Return ``X-Pipeline-Signature``: ``sha256=`` and the hex HMAC of ``body`` (GitHub's)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def headers(change_id: int, body: bytes, secret: str | None, webhook=None) -> dict:
    """Return the headers of a post: JSON, the change id (idempotency key), the signature in
    ``webhook``'s scheme (Standard Webhooks' carries the time: build them for each attempt)."""
    result = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Pipeline-Change-Id": str(change_id),
    }
    if secret and webhook is not None and webhook.signing == signing.STANDARD:
        result.update(signing.standard_headers(secret, change_id, body))
    elif secret:
        result["X-Pipeline-Signature"] = signature(secret, body)
    return result


# -- posting -----------------------------------------------------------------------------------


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer that is not 2xx, reported as one: a webhook that moved is fixed
    in the configuration, never followed blindly (it could lead anywhere, secrets and all)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


@dataclass(frozen=True)
class Answer:
    """A receiver's answer: its status, headers and (the start of) its body."""

    status: int
    headers: dict
    body: bytes


def post(webhook: Webhook, body: bytes, extra_headers: dict, timeout=TIMEOUT) -> int:
    """POST ``body``; return the 2xx status, or raise :class:`DeliveryFailed` with the reason."""
    answer = exchange(webhook, body, extra_headers, timeout)
    if not 200 <= answer.status < 300:
        reason = f"HTTP {answer.status}"
        if 300 <= answer.status < 400:
            where = host_of(answer.headers.get("location"))
            reason += f", a redirect{' to ' + where if where else ''}: not followed (fix the URL)"
        raise DeliveryFailed(reason)
    return answer.status


def exchange(webhook: Webhook, body: bytes, extra_headers: dict, timeout=TIMEOUT) -> Answer:
    """POST ``body``; return the answer, whatever its status (headers by lower-case name), or
    raise :class:`DeliveryFailed` when none came (refused, timed out, reset, not HTTP).

    ``timeout`` bounds each connect and read; the whole attempt ends after
    ``ATTEMPT_TIMEOUTS * timeout`` seconds, however the receiver paces its bytes.
    """
    limit = ATTEMPT_TIMEOUTS * timeout
    with Deadline(limit) as deadline:
        try:
            answer = _exchange(deadline.opener(_NoRedirects), webhook, body, extra_headers, timeout)
        except DeliveryFailed:
            if not deadline.expired:
                raise
        if not deadline.expired:  # a cut answer may still parse (headers end at EOF)
            return answer
    raise DeliveryFailed(f"no complete answer in {limit:g} s (the receiver is too slow)")


def _exchange(opener, webhook: Webhook, body: bytes, extra_headers: dict, timeout) -> Answer:
    request = urllib.request.Request(webhook.target, data=body, method="POST")
    for name, value in extra_headers.items():
        request.add_header(name, value)
    if webhook.authorization:
        request.add_header("Authorization", webhook.authorization)
    try:
        try:
            response = opener.open(request, timeout=timeout)
        except urllib.error.HTTPError as error:  # an answer all the same
            response = error
        with response:
            # A little of the answer (so the server sees it was taken); answers we read are small.
            data = response.read(MAX_ANSWER)
            headers = {name.lower(): value for name, value in response.headers.items()}
            return Answer(response.status, headers, data)
    except urllib.error.URLError as error:  # refused, unknown host, TLS, connect timeout
        raise DeliveryFailed(_reason(error.reason, timeout)) from None
    except (OSError, ValueError, http.client.HTTPException) as error:  # resets, bad answers
        raise DeliveryFailed(_reason(error, timeout)) from None


def host_of(url) -> str:
    """Return the ``host[:port]`` of ``url`` as a log may show it: never its user info
    (``user:secret@``), path or query, which may hold credentials or tokens; "" if none."""
    try:
        parts = urllib.parse.urlsplit(url or "")
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return ""
    host = f"[{host}]" if ":" in host else host
    return terminal_safe(host if port is None or not host else f"{host}:{port}")


def _reason(error, timeout) -> str:
    if isinstance(error, TimeoutError):
        return f"no answer within {timeout:g} s"
    text = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return terminal_safe(text)[:200]
