"""Settings: every one comes from an environment variable prefixed ``PIPELINE_``.

``SETTINGS`` is the single source of truth; README's configuration table lists the same names
(a test keeps the two in step).
"""

import math
import os
import stat
from collections import namedtuple

from webapp.core.errors import InvalidInput
from webapp.core.fleet_settings import FLEET_SETTINGS
from webapp.core.pipelines import bucket_map
from webapp.core.text import whole_number

# os.path, not pathlib: this module is on the CLI's start-up path (pathlib costs ~4 ms there).
# The checkout (or image) root: webapp/core/config.py is three levels below it.
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: The embedded demo database: the dashboard's default, named explicitly for CLI writes.
EMBEDDED_DB = os.path.join(ROOT, "instance", "pipeline.db")

Setting = namedtuple("Setting", "env key default kind help")

SETTINGS = (
    Setting(
        "PIPELINE_DB",
        "DB",
        None,
        "path",
        "SQLite file to manage; must exist (never created). Unset: the dashboard and CLI reads "
        "use the embedded demo database `instance/pipeline.db`, made on first use; CLI writes "
        "refuse to guess.",
    ),
    Setting(
        "PIPELINE_WRITE_TIMEOUT",
        "WRITE_TIMEOUT",
        10.0,
        "float",
        "Seconds a write may wait for the lock (retries included) before failing.",
    ),
    Setting("PIPELINE_BUCKET_RAW", "BUCKET_RAW", "ingestion", "str", "Bucket for `raw`."),
    Setting(
        "PIPELINE_BUCKET_SCHEMATIZED",
        "BUCKET_SCHEMATIZED",
        "validated",
        "str",
        "Bucket for `schematized`.",
    ),
    Setting(
        "PIPELINE_BUCKET_FILTERED", "BUCKET_FILTERED", "enriched", "str", "Bucket for `filtered`."
    ),
    Setting(
        "PIPELINE_BUCKET_AGGREGATED",
        "BUCKET_AGGREGATED",
        "aggregated",
        "str",
        "Bucket for `aggregated`.",
    ),
    Setting(
        "PIPELINE_SECRET_KEY",
        "SECRET_KEY",
        None,
        "str",
        "Signs sessions and CSRF tokens; required outside development, same in every worker. "
        "At least 32 bytes and not guessable (no repeats, no words like `secret`), or the server "
        "refuses to start.",
    ),
    Setting(
        "PIPELINE_SECRET_KEY_FILE",
        "SECRET_KEY_FILE",
        None,
        "path",
        "File holding the secret key (a Docker or Kubernetes secret); used when "
        "`PIPELINE_SECRET_KEY` is unset. Same rules; a missing, unreadable or empty file "
        "stops the start.",
    ),
    Setting(
        "PIPELINE_USERS_FILE",
        "USERS_FILE",
        None,
        "path",
        "htpasswd file (bcrypt) of operator accounts. Unset or empty: read-only dashboard. "
        "Unreadable: the site stays up read-only and `/readyz` answers 503.",
    ),
    Setting(
        "PIPELINE_STATE_DIR",
        "STATE_DIR",
        None,
        "path",
        "Directory for what every worker shares: sign-in sessions and failed-login counts. "
        "Unset: `instance/` beside the app. Must be writable (a tmpfs is fine: a restart then "
        "signs everyone out).",
    ),
    Setting(
        "PIPELINE_SESSION_IDLE_MINUTES",
        "SESSION_IDLE_MINUTES",
        60,
        "minutes",
        "A sign-in ends after this many minutes without a request from the operator (the "
        "dashboard's own polls do not count).",
    ),
    Setting(
        "PIPELINE_SESSION_HOURS",
        "SESSION_HOURS",
        12,
        "hours",
        "A sign-in ends this many hours after it began, however active.",
    ),
    Setting(
        "PIPELINE_PROXY_COUNT",
        "PROXY_COUNT",
        0,
        "count",
        "Reverse proxies in front that add `X-Forwarded-For`/`-Proto`/`-Host`; their values "
        "are trusted for that many hops (the client address the login limits count). `0`: "
        "clients connect directly, the headers are ignored.",
    ),
    Setting(
        "PIPELINE_READ_REQUIRES_LOGIN",
        "READ_REQUIRES_LOGIN",
        False,
        "bool",
        "`1`: reading pages and the API needs a login too.",
    ),
    Setting(
        "PIPELINE_REQUIRE_REASON",
        "REQUIRE_REASON",
        True,
        "bool",
        "`0`: a change may be made without a reason (form, API and CLI alike).",
    ),
    Setting(
        "PIPELINE_POLL_SECONDS",
        "POLL_SECONDS",
        2.0,
        "float",
        "How often the dashboard asks for changes.",
    ),
    Setting(
        "PIPELINE_WEBHOOKS",
        "WEBHOOKS",
        None,
        "str",
        "Comma-separated http(s) URLs that `pipeline notify` posts each change to (`--webhook` "
        "replaces them); `standard+URL` signs one the Standard Webhooks way.",
    ),
    Setting(
        "PIPELINE_WEBHOOK_SECRET",
        "WEBHOOK_SECRET",
        None,
        "str",
        "Key that signs each webhook post (`X-Pipeline-Signature`, or Standard Webhooks' "
        "`webhook-signature` for a `standard+` URL, which needs a `whsec_` key). Unset: posts "
        "are not signed.",
    ),
    Setting(
        "PIPELINE_WEBHOOK_SECRET_FILE",
        "WEBHOOK_SECRET_FILE",
        None,
        "path",
        "File holding the webhook key (a Docker or Kubernetes secret); used when "
        "`PIPELINE_WEBHOOK_SECRET` is unset. Surrounding whitespace, the last newline included, "
        "is not part of the key.",
    ),
    Setting(
        "PIPELINE_ENV",
        "ENV",
        "production",
        "str",
        "`development` allows a per-process secret key (as does `flask --debug`); gunicorn "
        "then refuses more than one worker.",
    ),
    Setting(
        "PIPELINE_BIND",
        "BIND",
        "0.0.0.0:8000",
        "str",
        "Address gunicorn listens on (read by `gunicorn.conf.py`; workers: `WEB_CONCURRENCY`, "
        "default 2).",
    ),
    Setting(
        "PIPELINE_WORKER_THREADS",
        "WORKER_THREADS",
        8,
        "int",
        "Threads per gunicorn worker (`gthread`), at least 2: a change waiting for a held lock "
        "blocks only its own thread, at most half of them may wait at once, and a quarter stay "
        "free for probes and pages.",
    ),
    Setting(
        "PIPELINE_WORKER_TIMEOUT",
        "WORKER_TIMEOUT",
        30.0,
        "float",
        "Seconds gunicorn lets a request run before restarting its worker; must exceed "
        "`PIPELINE_WRITE_TIMEOUT` by 5 s.",
    ),
    Setting(
        "PIPELINE_GRACEFUL_TIMEOUT",
        "GRACEFUL_TIMEOUT",
        20.0,
        "float",
        "Seconds gunicorn lets in-flight requests finish after SIGTERM.",
    ),
    *(Setting(*fields) for fields in FLEET_SETTINGS),
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


# Whole-number kinds and the values they allow.
WHOLE_NUMBERS = {
    "int": (1, 256),
    "rate": (1, 100_000),
    "count": (0, 16),
    "minutes": (1, 10080),
    "hours": (1, 720),
}


def _convert(setting: Setting, raw: str):
    if setting.kind in WHOLE_NUMBERS:
        low, high = WHOLE_NUMBERS[setting.kind]
        try:  # the one integer parser: "²" and "٣" are no numbers here
            return whole_number(raw.strip(), setting.env, low, high)
        except InvalidInput:
            raise InvalidInput(
                f"{setting.env} must be a whole number from {low} to {high} (got {raw!r})"
            ) from None
    if setting.kind == "float":
        try:
            value = float(raw) if raw.strip().isascii() else math.nan
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or not 0 <= value <= 86400:
            raise InvalidInput(
                f"{setting.env} must be a number of seconds, 0 to 86400 (got {raw!r})"
            )
        return value
    if setting.kind == "bool":
        if raw.strip().lower() in _TRUE:
            return True
        if raw.strip().lower() in _FALSE:
            return False
        raise InvalidInput(f"{setting.env} must be 0 or 1 (got {raw!r})")
    return raw


def load_settings(environ) -> dict:
    """Return config keys (without the prefix) from ``environ``, defaults filled in."""
    config = {}
    for setting in SETTINGS:
        raw = environ.get(setting.env)
        config[setting.key] = setting.default if raw in (None, "") else _convert(setting, raw)
    config["SECRET_KEY_SOURCE"] = "PIPELINE_SECRET_KEY"  # named by messages, never the key
    if not config["SECRET_KEY"] and config["SECRET_KEY_FILE"]:
        config["SECRET_KEY"] = read_secret_file(config["SECRET_KEY_FILE"])
        config["SECRET_KEY_SOURCE"] = f"PIPELINE_SECRET_KEY_FILE ({config['SECRET_KEY_FILE']})"
    return config


MAX_SECRET_BYTES = 4096  # a key is tens of bytes; more is the wrong file (or /dev/urandom)


def read_secret_file(path, setting="PIPELINE_SECRET_KEY_FILE") -> str:
    """Return the secret in ``path`` (compose and Kubernetes mount secrets as files).

    Every way the file can be wrong is one line naming ``setting``: never a traceback, and never
    a hang on a FIFO or a device.
    """
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; a regular file ignores it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        raise InvalidInput(f"{setting}: cannot read {path} ({error.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise InvalidInput(f"{setting}: {path} is not a regular file")
    with os.fdopen(fd, "rb") as handle:
        try:
            data = handle.read(MAX_SECRET_BYTES + 1)
        except OSError as error:
            raise InvalidInput(f"{setting}: cannot read {path} ({error.strerror})") from None
    if len(data) > MAX_SECRET_BYTES:
        raise InvalidInput(f"{setting}: {path} is larger than {MAX_SECRET_BYTES} bytes")
    try:
        secret = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise InvalidInput(f"{setting}: {path} is not UTF-8 text") from None
    if not secret:
        raise InvalidInput(f"{setting}: {path} is empty")
    return secret


def webhook_secret(config) -> str | None:
    """Return the key that signs webhook posts: ``PIPELINE_WEBHOOK_SECRET``, else its file.

    Read only by ``pipeline notify``, so a bad key file never stops ``get`` or the dashboard.
    """
    if config.get("WEBHOOK_SECRET"):
        return config["WEBHOOK_SECRET"]
    if config.get("WEBHOOK_SECRET_FILE"):
        return read_secret_file(config["WEBHOOK_SECRET_FILE"], "PIPELINE_WEBHOOK_SECRET_FILE")
    return None


def fleet_secret(config) -> str | None:
    """Return the fleet secret node keys derive from: ``PIPELINE_FLEET_SECRET``, else its file."""
    if config.get("FLEET_SECRET"):
        return config["FLEET_SECRET"]
    if config.get("FLEET_SECRET_FILE"):
        return read_secret_file(config["FLEET_SECRET_FILE"], "PIPELINE_FLEET_SECRET_FILE")
    return None


def buckets_from(config) -> dict[str, str]:
    """Return the type → bucket mapping that ``config``'s ``BUCKET_*`` settings give."""
    return bucket_map(
        {f"PIPELINE_{key}": value for key, value in config.items() if key.startswith("BUCKET_")}
    )
