"""Changing the pipeline from the dashboard: review, confirm, apply; revert the same way.

Every step re-renders the dashboard's change panel (the whole page without JavaScript). The
confirmation carries the ``expect_id`` the operator reviewed, so a change made meanwhile by
someone else is refused with nothing written, and the operator may apply on top of it.
"""

from flask import Blueprint, flash, redirect, request, url_for

from .auth import accounts_configured, current_operator
from .dashboard import dashboard
from .db import get_store
from .errors import ConflictError, InvalidInput
from .render import wants_fragment

bp = Blueprint("changes", __name__)


@bp.before_request
def refuse_anonymous():
    """Refuse writes (403) from anyone who is not a logged-in operator."""
    if request.method != "POST" or current_operator():
        return None
    message = (
        "The dashboard is read-only: no operator accounts are configured."
        if not accounts_configured()
        else "Sign in as an operator to change the pipeline."
    )
    return dashboard(get_store(), 403, step="denied", message=message)


def applied(result, store):
    """Report a write: the fresh panel for htmx, else flash and redirect (post/redirect/get)."""
    change = result.change
    message = (
        f"Pipeline set to {change.pipeline_type}"
        if result.changed
        else f"Pipeline is already {change.pipeline_type}; nothing written"
    )
    if wants_fragment():
        return dashboard(store, result=message, announce=message)
    flash(message)
    return redirect(url_for("dashboard.index"))


def attempt(form, write, store, **panel):
    """Run ``write()``; show a conflict (409) or a refused value (400) in the panel."""
    try:
        return applied(write(), store)
    except ConflictError as error:
        return dashboard(store, 409, step="conflict", form=form, conflict=error, **panel)
    except InvalidInput as error:
        step = "confirm" if "target" in panel else "form"
        return dashboard(store, 400, step=step, form=form, message=str(error), **panel)


@bp.route("/change", methods=["GET", "POST"])
def review():
    """Check the change form and ask for confirmation (GET: the form, prefilled)."""
    from .forms import ChangeForm

    store = get_store()
    if request.method == "GET":
        form = ChangeForm(formdata=request.args)
        form.expect_id.data = store.current().version  # always the state shown, never the URL's
        return dashboard(store, form=form)
    form = ChangeForm()
    if not form.validate():
        return dashboard(store, 422, form=form)
    return dashboard(store, step="confirm", form=form)


@bp.post("/change/apply")
def apply():
    """Apply a reviewed change, unless the pipeline changed since it was reviewed."""
    from .forms import ChangeForm

    store, form = get_store(), ChangeForm()
    if not form.validate():
        return dashboard(store, 422, form=form)
    return attempt(
        form,
        lambda: store.set(
            form.pipeline_type.data,
            updated_by=current_operator(),
            reason=form.reason.data,
            source="web",
            expect_id=form.expect_id.data,
        ),
        store,
    )


def revert_target(store, change_id):
    target = store.get(change_id)
    if target is None:
        raise InvalidInput(f"no change #{change_id} to revert to")
    return target


@bp.post("/revert/<int:change_id>")
def review_revert(change_id):
    """Ask for confirmation before reverting to change ``change_id``."""
    from .forms import RevertForm

    store, form = get_store(), RevertForm()
    target = revert_target(store, change_id)
    if not form.validate():
        return dashboard(store, 422, message="The revert form was incomplete; try again.")
    return dashboard(store, step="confirm", form=form, target=target)


@bp.post("/revert/<int:change_id>/apply")
def apply_revert(change_id):
    """Revert to change ``change_id`` as a new change, unless the pipeline changed meanwhile."""
    from .forms import RevertForm

    store, form = get_store(), RevertForm()
    target = revert_target(store, change_id)
    if not form.validate():
        return dashboard(store, 422, step="confirm", form=form, target=target)
    return attempt(
        form,
        lambda: store.revert(
            target.id,
            updated_by=current_operator(),
            reason=form.reason.data or None,
            source="web",
            expect_id=form.expect_id.data,
        ),
        store,
        target=target,
    )


def init_app(app) -> None:
    app.register_blueprint(bp)
