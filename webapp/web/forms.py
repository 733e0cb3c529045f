"""The sign-in form, shared by every app here (Flask-WTF: CSRF token included)."""

from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from webapp.core.text import MAX_NAME


class LoginForm(FlaskForm):
    username = StringField("Operator", validators=[DataRequired(), Length(max=MAX_NAME)])
    password = PasswordField("Password", validators=[DataRequired()])
