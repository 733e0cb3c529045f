"""No 500 from crafted requests: property-based requests to every route in the app's URL map.

Hypothesis draws a route from ``app.url_map`` (every rule, every method it allows, and some it
does not), fills its path arguments and every query, form, JSON and header parameter the app
reads with hostile values (non-ASCII digits, integers beyond 64 bits, negatives, CR/LF, broken
percent-encoding and UTF-8, deep JSON, wrong content types), and sends it as an anonymous
visitor and as a signed-in operator. Every answer must be below 500 (the database here is
healthy, so not even the documented 503s may appear); answers under /api/ must be one-line JSON
errors. The tests count the requests they made and the routes they reached.
"""

import base64
import json
import re
from collections import Counter
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from weblib import log_in, make_app

from webapp.node import forms
from webapp.web.forms import LoginForm

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = 600  # per test; each example is one request

# Values that have broken parsers before: Unicode digits int() or isdigit() accept, numbers
# past 64 bits, signs and spaces, line breaks, controls, bidi, redirects elsewhere.
HOSTILE = [
    "²",
    "٣",
    "١٢",
    "１２",
    "Ⅻ",
    "0",
    "-1",
    "+1",
    " 1",
    "1 ",
    "1_000",
    "0x10",
    "1e309",
    "NaN",
    "-Infinity",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "99999999999999999999999999999999",
    "1" * 400,
    "\r\n",
    "a\rb",
    "x\nSet-Cookie: evil=1",
    "\x00",
    "\x1b[2J",
    "\x7f",
    "\x85",
    "\u2028",
    "\u202e",
    "//evil.example",
    "/\\evil.example",
    "/%2F/evil.example",
    "https://evil.example",
    "raw",
    "filtered",
    "true",
    "null",
    "[]",
    "{}",
    "\ufeff",
    "é" * 3000,
]
# Raw query-string fragments: percent-encoding that is broken or decodes to broken UTF-8.
RAW_ENCODINGS = ["%", "%z", "%zz", "%ff", "%c3%28", "%ed%a0%80", "%00", "%0d%0a", "%e2%80%ae"]


def parameter_names() -> list[str]:
    """Return every query, form and JSON parameter name the app reads (from its own source)."""
    names = {"csrf_token", "next"}
    for form in (forms.ChangeForm, forms.RevertForm, LoginForm, forms.HistoryFilterForm):
        names |= {name for name in dir(form) if hasattr(getattr(form, name), "field_class")}
    pattern = re.compile(r"""(?:args|form|body)(?:\.get\(|\[)\s*["'](\w+)["']""")
    for source in (ROOT / "webapp").glob("*.py"):
        names |= set(pattern.findall(source.read_text()))
    return sorted(names)


PARAMETERS = parameter_names()
HEADERS = [
    "If-Match",
    "If-None-Match",
    "HX-Request",
    "HX-Boosted",
    "HX-Target",
    "HX-Trigger",
    "HX-Current-URL",
    "HX-History-Restore-Request",
    "X-CSRFToken",
    "X-Forwarded-For",
    "X-Forwarded-Proto",
    "X-Forwarded-Host",
    "Accept",
    "Accept-Language",
    "Origin",
    "Referer",
]
FORM = "application/x-www-form-urlencoded"
CONTENT_TYPES = [
    "application/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "multipart/form-data; boundary=",
    "text/plain",
    "application/json; charset=latin-1",
    "application/xml",
    "",
]

values = st.one_of(
    st.sampled_from(HOSTILE),
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.text(max_size=40),
)
# Header values cannot carry CR, LF or NUL: the HTTP server refuses those itself (tested live).
header_values = values.map(lambda text: re.sub(r"[\r\n\x00]", " ", text))


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**80), max_value=2**80),
        st.floats(allow_nan=False),
        values,
        st.sampled_from(["\ud800", "a\udfffb"]),  # lone surrogates, as JSON escapes allow
    ),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(values, children, max_size=3),
    max_leaves=8,
)


@st.composite
def json_bodies(draw) -> bytes:
    kind = draw(st.sampled_from(["object", "deep", "other", "bytes"]))
    if kind == "deep":
        return nested(draw(st.sampled_from([100, 5000, 20000]))).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=60))
    if kind == "other":
        return json.dumps(draw(json_values)).encode()
    keys = st.sampled_from(PARAMETERS) | values
    body = draw(st.dictionaries(keys, json_values, max_size=5))
    return json.dumps(body).encode()


@st.composite
def path_argument(draw, converter: str) -> str:
    kind = draw(st.sampled_from(["number", "hostile", "raw"]))
    if kind == "number":
        return str(draw(st.integers(min_value=-(2**70), max_value=2**70)))
    if kind == "raw":
        return draw(
            st.sampled_from(RAW_ENCODINGS + ["..", "../..", "%2e%2e/%2e%2e", "csv", "json"])
        )
    return quote(draw(values), safe="")


@st.composite
def query_string(draw) -> bytes:
    pairs = []
    for name in draw(st.lists(st.sampled_from(PARAMETERS) | values, max_size=4)):
        if draw(st.booleans()):
            value = quote(draw(values), safe="")
        else:
            value = draw(st.sampled_from(RAW_ENCODINGS))
        pairs.append(f"{quote(name, safe='')}={value}")
    return "&".join(pairs).encode("ascii")


@st.composite
def crafted_request(draw, rules):
    rule = draw(st.sampled_from(rules))
    allowed = sorted(rule.methods - {"OPTIONS"})
    # Mostly the methods the route takes (their views run), sometimes one it refuses.
    method = draw(st.sampled_from(allowed * 4 + ["PUT", "DELETE", "PATCH", "POST"]))
    path = rule.rule
    for argument in rule.arguments:
        converter = re.search(rf"<(\w+)[^>]*:{argument}>", rule.rule).group(1)
        path = re.sub(rf"<[^>]*:{argument}>", draw(path_argument(converter)), path)
    headers = {
        name: draw(header_values) for name in draw(st.lists(st.sampled_from(HEADERS), max_size=4))
    }
    if draw(st.booleans()):
        credentials = draw(st.sampled_from(["alice:alice-secret", "alice:wrong", "", ":"]))
        credentials = draw(st.sampled_from([credentials, draw(values)]))
        token = base64.b64encode(credentials.encode("utf-8", "surrogatepass")).decode()
        headers["Authorization"] = draw(
            st.sampled_from([f"Basic {token}", "Basic %%%", "Bearer x", "Basic"])
        )
    body, content_type = b"", None
    if method in ("POST", "PUT", "PATCH"):
        # Mostly what the route takes (forms for pages, JSON for the API), so views run.
        usual = "application/json" if path.startswith("/api/") else FORM
        content_type = draw(st.sampled_from([usual] * len(CONTENT_TYPES) + CONTENT_TYPES))
        if "json" in content_type and draw(st.integers(0, 3)):
            body = draw(json_bodies())
        elif draw(st.booleans()):
            body = draw(query_string())
        else:
            body = draw(st.binary(max_size=80))
    return rule, method, path, draw(query_string()), headers, body, content_type


def send(client, request):
    rule, method, path, query, headers, body, content_type = request
    if content_type is not None:
        headers = {**headers, "Content-Type": content_type}
    target = f"{path}?{query.decode('ascii')}" if query else path
    response = client.open(target, method=method, headers=headers, data=body)
    response.get_data()  # streamed answers (the exports) run to the end
    return response


def check(response, request):
    rule, method, path = request[:3]
    assert response.status_code < 500, (
        f"{method} {path}?{request[3].decode()} answered {response.status_code}"
    )
    if path.startswith("/api/") and response.status_code >= 400 and method != "HEAD":
        assert response.mimetype == "application/json", (method, path, response.status_code)
        error = response.get_json()["error"]
        assert isinstance(error, str) and "\n" not in error and error


def fuzz(client, app, examples=EXAMPLES, skip=()):
    """Send ``examples`` crafted requests through ``client``; return the statuses and routes."""
    rules = sorted(app.url_map.iter_rules(), key=lambda rule: (rule.rule, sorted(rule.methods)))
    rules = [rule for rule in rules if rule.rule not in skip]
    statuses, reached = Counter(), set()

    def run(among, count):
        @settings(
            max_examples=count,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(crafted_request(among))
        def send_one(request):
            response = send(client, request)
            statuses[response.status_code] += 1
            reached.add(request[0].rule)
            check(response, request)

        send_one()

    run(rules, examples)
    # Random draws among 30-odd routes can miss one: each missed route gets a run of its own.
    for rule in [rule for rule in rules if rule.rule not in reached]:
        run([rule], 20)
    return statuses, reached, rules


@pytest.fixture
def fuzz_app(db_path, tmp_path, monkeypatch):
    """An app with operators where an unexpected exception becomes a 500 answer, not a raise."""
    app = make_app(db_path, tmp_path, monkeypatch, PROPAGATE_EXCEPTIONS=False)
    with app.test_client() as writer:  # a few changes, so ids and reverts have something to hit
        log_in(writer)
        for expect, kind in enumerate(["filtered", "aggregated", "raw"]):
            change = {"pipeline_type": kind, "reason": "seed", "expect_id": str(expect)}
            writer.post("/change/apply", data=change)
    return app


def report(statuses, reached, rules, label):
    total = sum(statuses.values())
    print(f"\n{label}: {total} requests, statuses {dict(sorted(statuses.items()))}")
    assert total >= EXAMPLES * 0.9, total  # hypothesis ran about as many as asked
    assert reached == {rule.rule for rule in rules}, "routes never reached"
    assert not [status for status in statuses if status >= 500]


def test_anonymous_crafted_requests_never_answer_5xx(fuzz_app):
    fuzz_app.config["WTF_CSRF_ENABLED"] = True  # hostile tokens meet the real CSRF check
    report(*fuzz(fuzz_app.test_client(), fuzz_app), "anonymous")


def test_an_operators_crafted_requests_never_answer_5xx(fuzz_app):
    client = fuzz_app.test_client()
    assert log_in(client).status_code == 302
    # Without /logout, which would end the sign-in the run is about (the others send it).
    report(*fuzz(client, fuzz_app, skip={"/logout"}), "operator")
    assert 'id="operator-name">alice<' in client.get("/").get_data(as_text=True)


def test_crafted_requests_behind_a_proxy_never_answer_5xx(db_path, tmp_path, monkeypatch):
    """With PIPELINE_PROXY_COUNT=2 the X-Forwarded-* values are parsed: hostile ones too."""
    app = make_app(db_path, tmp_path, monkeypatch, PROPAGATE_EXCEPTIONS=False, PROXY_COUNT=2)
    report(*fuzz(app.test_client(), app), "behind two proxies")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/api/history?limit=%C2%B2", "limit must be a whole number from 1 to 500"),
        ("/api/history?limit=%D9%A3", "limit must be a whole number from 1 to 500"),
        ("/api/history?before=-1", "before (a change id) must be a whole number"),
        ("/api/history?before=99999999999999999999", "before (a change id) must be a whole"),
        ("/api/nothing", "The requested URL was not found on the server."),
    ],
)
def test_known_crafted_queries_get_their_one_line_reason(fuzz_app, path, expected):
    response = fuzz_app.test_client().get(path)
    assert response.status_code in (400, 404)
    assert response.get_json()["error"].startswith(expected)


def test_deep_json_and_wrong_content_types_are_refused_in_one_line(fuzz_app):
    client = fuzz_app.test_client()
    auth = {"Authorization": "Basic " + base64.b64encode(b"alice:alice-secret").decode()}
    deep = client.post(
        "/api/pipeline", data=nested(20000), headers=auth, content_type="application/json"
    )
    assert deep.status_code == 400
    wrong = client.post("/api/pipeline", data="pipeline_type=raw", headers=auth)
    assert wrong.status_code == 400
    assert wrong.get_json() == {"error": "send Content-Type: application/json"}
    huge = client.post(
        "/api/pipeline", data=b"[" * 100_000, headers=auth, content_type="application/json"
    )
    assert huge.status_code == 413 and "error" in huge.get_json()
    stale = client.post(
        "/api/pipeline",
        json={"pipeline_type": "raw", "reason": "r", "expect_id": 2**64},
        headers=auth,
    )
    assert stale.status_code == 400
    if_match = client.post(
        "/api/pipeline",
        json={"pipeline_type": "raw", "reason": "r"},
        headers={**auth, "If-Match": '"²"'},
    )
    assert if_match.status_code == 400
    assert client.delete("/api/pipeline").get_json() == {
        "error": "The method is not allowed for the requested URL."
    }
