"""Flask-WTF forms: change, revert, login, and the history filters.

Every form carries a CSRF token; ``updated_by`` is never a field (it is the logged-in operator).
Reasons follow the store's text rules (webapp/text.py), so a refusal is a field message before
anything is reviewed. Imported only by views, inside requests: the CLI starts without WTForms.
"""

import re
from datetime import UTC, datetime

from flask import current_app
from flask_wtf import FlaskForm
from wtforms import (
    DateTimeLocalField,
    HiddenField,
    IntegerField,
    SelectChoice,
    SelectField,
    StringField,
)
from wtforms.validators import (
    InputRequired,
    Length,
    NumberRange,
    Optional,
    StopValidation,
    ValidationError,
)
from wtforms.widgets import HiddenInput

from webapp.core.errors import InvalidInput
from webapp.core.pipelines import DESCRIPTIONS, PIPELINE_TYPES
from webapp.core.text import MAX_ID, MAX_NAME, MAX_REASON, clean_text, whole_number

CURRENT_MARK = " (current)"
DEFAULT_MARK = " (default: never set)"  # may be recorded as a first, deliberate choice


def type_mark(current) -> str:
    """Return the mark of the type in force: "(current)", or "(default: never set)" when no
    change was ever recorded (the default is in force, not a choice anyone made)."""
    return DEFAULT_MARK if current.is_default else CURRENT_MARK


def type_choices(current=None) -> list[SelectChoice]:
    """Return the pipeline choices: no preselection (a placeholder first), the type in force
    marked "(current)" in words (static/app.js moves the mark when a poll sees a change)."""
    choices = [SelectChoice("", "Choose a pipeline…")]
    for name in PIPELINE_TYPES:
        label = f"{name} — {DESCRIPTIONS[name]}"
        if current is not None and name == current.pipeline_type:
            label += type_mark(current)
        choices.append(SelectChoice(name, label))
    return choices


def type_refusal(pipeline_type, accepted) -> str | None:
    """Say why this database's table refuses one of our types, naming those it accepts."""
    if pipeline_type not in PIPELINE_TYPES or pipeline_type in accepted:
        return None
    settable = [name for name in PIPELINE_TYPES if name in accepted]
    return (
        f"This database's pipeline_config table (made by another tool) refuses {pipeline_type}; "
        f"it accepts {', '.join(settable) or 'none of the types this tool sets'}."
    )


def check_reason(field) -> None:
    """Apply the one rule for every reason (change or revert): required unless
    PIPELINE_REQUIRE_REASON=0, and the store's text rules; a refusal names the field."""
    try:  # the text rules first: "\n" is refused as a line break, not taken for an empty reason
        clean_text(field.data, "reason", MAX_REASON, required=False)
    except InvalidInput as error:
        raise StopValidation(str(error)) from None
    if current_app.config.get("REQUIRE_REASON", True) and not (field.data or "").strip():
        raise StopValidation("Say why: the reason is kept in the history.")


class WholeNumberField(IntegerField):
    """An IntegerField of ASCII digits only, at most 64 bits: int() also takes "٣" and " 1_0",
    and WTForms' NumberRange fails with an OverflowError (a 500) on integers past a float."""

    def process_formdata(self, valuelist):
        if valuelist and valuelist[0] != "":
            try:
                whole_number(valuelist[0], self.name)
            except InvalidInput:
                self.data = None
                raise ValueError(self.gettext("Not a valid integer value.")) from None
        super().process_formdata(valuelist)


class ChangeForm(FlaskForm):
    """Switch the pipeline; ``expect_id`` is the change the form was rendered from.

    ``current`` (the change in force) is marked in the choices; choosing its type again on top
    of it is refused, since it would change nothing.
    """

    pipeline_type = SelectField(
        "New pipeline",
        choices=type_choices(),
        validators=[InputRequired("Choose the new pipeline.")],
    )
    # One line; the length and characters are checked by the store's rules (check_reason).
    reason = StringField("Reason", render_kw={"maxlength": MAX_REASON})
    expect_id = WholeNumberField(widget=HiddenInput(), validators=[InputRequired(), NumberRange(0)])

    def __init__(self, *args, current=None, accepted=PIPELINE_TYPES, **kwargs):
        super().__init__(*args, **kwargs)
        self.current = current
        self.accepted = accepted  # what the table's CHECK list accepts (another tool's may differ)
        self.pipeline_type.choices = type_choices(current)

    def base_on(self, current) -> int | None:
        """Make the server's read ``current`` the base this form carries, whatever the request
        said (a crafted link's ``expect_id``, a stale page's); return the id the request named.
        """
        return base_on(self.expect_id, current)

    def validate_pipeline_type(self, field):
        refusal = type_refusal(field.data, self.accepted)
        if refusal:
            raise ValidationError(refusal)
        current = self.current
        # Refused only on the base it was chosen on: on a stale base the store answers with the
        # conflict, which says who changed what meanwhile.
        if (
            current is not None
            and not current.is_default
            and field.data == current.pipeline_type
            and self.expect_id.data == current.version
        ):
            raise ValidationError(
                f"{field.data} is already the current pipeline (change #{current.id}): "
                "choose another one."
            )

    def validate_reason(self, field):
        check_reason(field)


def base_on(field, current) -> int | None:
    """Set a hidden ``expect_id`` field to ``current.version`` (what the server read), dropping
    the request's value, its raw text and any error it had; return the request's value (None
    when it named none, or none that is a change id).

    WTForms renders a field from its raw request text when there is one, so setting ``data``
    alone would still send the request's id on to the confirmation.
    """
    named = field.data
    field.data = current.version
    field.raw_data = [str(current.version)]
    field.process_errors = []
    return named


class RevertForm(FlaskForm):
    """Make an earlier change's pipeline current again, on top of ``expect_id``.

    ``next`` is the page the revert started from (the dashboard or /history with its filters).
    """

    reason = StringField("Reason", render_kw={"maxlength": MAX_REASON})
    expect_id = WholeNumberField(widget=HiddenInput(), validators=[InputRequired(), NumberRange(0)])
    next = HiddenField()

    def validate_reason(self, field):
        check_reason(field)  # optional only when reasons are (then "revert to change #N")


class HistoryFilterForm(FlaskForm):
    """GET filters for /history and its exports (no CSRF: reading changes nothing)."""

    class Meta:
        csrf = False

    pipeline_type = SelectField(
        "Type",
        choices=[SelectChoice("", "any")] + [SelectChoice(name) for name in PIPELINE_TYPES],
        default="",
    )
    # A name, or the ``hex:`` form of a stored name that is not UTF-8 (see operator_choice).
    operator = StringField("Operator", validators=[Optional(), Length(max=4 + 8 * MAX_NAME)])
    since = DateTimeLocalField("From (UTC)", validators=[Optional()])
    until = DateTimeLocalField("Until (UTC)", validators=[Optional()])
    before = WholeNumberField(widget=HiddenInput(), validators=[Optional(), NumberRange(0, MAX_ID)])
    after = WholeNumberField(widget=HiddenInput(), validators=[Optional(), NumberRange(0, MAX_ID)])

    def filters(self) -> dict:
        """Return the store filters these fields select (times are read as UTC)."""
        return {
            "pipeline_type": self.pipeline_type.data or None,
            "updated_by": stored_name((self.operator.data or "").strip()) or None,
            "since": _utc(self.since.data),
            "until": _utc(self.until.data),
        }

    def cursors(self) -> dict:
        """Return the keyset cursor of the page asked for (``before`` wins over ``after``)."""
        if self.before.data is not None:
            return {"before": self.before.data}
        if self.after.data is not None:
            return {"after": self.after.data}
        return {}


HEX_PREFIX = "hex:"
HEX_BYTES = re.compile(r"(?:[0-9a-f]{2})+")


def operator_choice(stored: bytes) -> tuple[str, str]:
    """Return (value, label) offering a stored ``updated_by`` in the operator filter.

    A name that is not UTF-8 cannot be typed or sent back as text: it is offered as ``hex:``
    and its bytes, labelled with what it reads as, and :func:`stored_name` turns it back.
    """
    try:
        name = stored.decode("utf-8")
        return name, name
    except UnicodeDecodeError:
        shown = stored.decode("utf-8", "replace")
        return HEX_PREFIX + stored.hex(), f"{shown} (stored bytes, not UTF-8)"


def stored_name(text: str) -> str | bytes:
    """Return what the operator filter compares: the text, or the bytes a ``hex:`` choice names
    (only bytes that are not UTF-8: any other ``hex:...`` is a name like another)."""
    digits = text[len(HEX_PREFIX) :]
    if text.startswith(HEX_PREFIX) and HEX_BYTES.fullmatch(digits):
        stored = bytes.fromhex(digits)  # only the form operator_choice writes: lowercase pairs
        try:
            stored.decode("utf-8")
        except UnicodeDecodeError:
            return stored
    return text


def _utc(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment else None
