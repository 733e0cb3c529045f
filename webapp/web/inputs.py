"""What every request's input must be before a view reads it: query strings and form bodies that
decode to UTF-8 text, and change ids in routes of ASCII digits (core.text's one integer parser).

Werkzeug is lenient where the README promises a refusal: it keeps ``%FF`` or ``%G1`` as literal
text, and its ``<int:...>`` converter matches any script's digits ("/revert/١٧" is change 17).
"""

from flask import request
from werkzeug.routing import BaseConverter, ValidationError

from webapp.core.errors import InvalidInput
from webapp.core.text import MAX_ID, check_urlencoded, whole_number


class ChangeIdConverter(BaseConverter):
    """``<int:...>`` in our routes: ASCII digits, 0 to 2**63 - 1; anything else is a 404."""

    regex = "[0-9]{1,19}"
    weight = 50

    def to_python(self, value: str) -> int:
        try:
            return whole_number(value, "a change id", 0, MAX_ID)
        except InvalidInput:
            raise ValidationError() from None

    def to_url(self, value) -> str:
        return str(whole_number(value, "a change id", 0, MAX_ID))


def refuse_undecodable_input() -> None:
    """Refuse (400) a query string or form body that is not UTF-8 once percent-decoded."""
    if request.routing_exception is not None:
        return  # no route (404, 405): that answer, in the route's own format, comes first
    check_urlencoded(request.query_string, "the query string")
    if request.mimetype == "application/x-www-form-urlencoded":
        check_urlencoded(request.get_data(cache=True), "the form")
    elif request.mimetype == "multipart/form-data":
        # No form of ours uploads files: every part is text, so the whole body is UTF-8 (werkzeug
        # would read other bytes in a field as U+FFFD, stored as if typed).
        try:
            request.get_data(cache=True).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput("the form is not UTF-8 text: send UTF-8") from None


def query_number(name: str, low: int = 0, high: int = MAX_ID) -> int | None:
    """Return query parameter ``name`` as a whole number (None when absent); else 400."""
    value = request.args.get(name)
    return None if value is None else whole_number(value, name, low, high)


def init_app(app) -> None:
    app.url_map.converters["int"] = ChangeIdConverter
    app.before_request(refuse_undecodable_input)
