"""Flask-WTF forms: change, revert, login, and the history filters.

Every form carries a CSRF token; ``updated_by`` is never a field (it is the logged-in operator).
Imported only by views, inside requests: WTForms is not needed to start the CLI.
"""

from datetime import UTC, datetime

from flask import current_app
from flask_wtf import FlaskForm
from wtforms import (
    DateTimeLocalField,
    IntegerField,
    PasswordField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
)
from wtforms.validators import (
    DataRequired,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    StopValidation,
)
from wtforms.widgets import HiddenInput

from .pipelines import DESCRIPTIONS, PIPELINE_TYPES
from .text import MAX_NAME, MAX_REASON

MAX_ID = 2**63 - 1  # SQLite's largest integer


class WholeNumberField(IntegerField):
    """An IntegerField of ASCII digits only, at most 64 bits: int() also takes "٣" and " 1_0",
    and WTForms' NumberRange fails with an OverflowError (a 500) on integers past a float."""

    def process_formdata(self, valuelist):
        if valuelist and valuelist[0] != "":
            text = valuelist[0]
            if not (text.isascii() and text.isdigit() and len(text) <= 19 and int(text) <= MAX_ID):
                self.data = None
                raise ValueError(self.gettext("Not a valid integer value."))
        super().process_formdata(valuelist)


class ChangeForm(FlaskForm):
    """Switch the pipeline; ``expect_id`` is the change the form was rendered from."""

    pipeline_type = SelectField(
        "New pipeline",
        choices=[SelectChoice(name, f"{name} — {DESCRIPTIONS[name]}") for name in PIPELINE_TYPES],
        validators=[InputRequired()],
    )
    reason = TextAreaField("Reason", validators=[Length(max=MAX_REASON)])
    expect_id = WholeNumberField(widget=HiddenInput(), validators=[InputRequired(), NumberRange(0)])

    def validate_reason(self, field):
        if current_app.config.get("REQUIRE_REASON", True) and not (field.data or "").strip():
            raise StopValidation("Say why: the reason is kept in the history.")


class RevertForm(FlaskForm):
    """Make an earlier change's pipeline current again, on top of ``expect_id``."""

    reason = TextAreaField("Reason", validators=[Length(max=MAX_REASON)])
    expect_id = WholeNumberField(widget=HiddenInput(), validators=[InputRequired(), NumberRange(0)])


class LoginForm(FlaskForm):
    username = StringField("Operator", validators=[DataRequired(), Length(max=MAX_NAME)])
    password = PasswordField("Password", validators=[DataRequired()])


class HistoryFilterForm(FlaskForm):
    """GET filters for /history and its exports (no CSRF: reading changes nothing)."""

    class Meta:
        csrf = False

    pipeline_type = SelectField(
        "Type",
        choices=[SelectChoice("", "any")] + [SelectChoice(name) for name in PIPELINE_TYPES],
        default="",
    )
    operator = StringField("Operator", validators=[Optional(), Length(max=MAX_NAME)])
    since = DateTimeLocalField("From (UTC)", validators=[Optional()])
    until = DateTimeLocalField("Until (UTC)", validators=[Optional()])
    before = WholeNumberField(widget=HiddenInput(), validators=[Optional(), NumberRange(0, MAX_ID)])
    after = WholeNumberField(widget=HiddenInput(), validators=[Optional(), NumberRange(0, MAX_ID)])

    def filters(self) -> dict:
        """Return the store filters these fields select (times are read as UTC)."""
        return {
            "pipeline_type": self.pipeline_type.data or None,
            "updated_by": (self.operator.data or "").strip() or None,
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


def _utc(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment else None
