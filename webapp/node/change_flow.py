"""Changing the pipeline from the dashboard or /history: review, confirm, apply; revert alike.

Every step renders the change panel on the page the flow started from: the dashboard (its
panel alone for htmx), or /history for a revert started there, named by ``next``. The
confirmation carries the ``expect_id`` the operator reviewed, so a change made meanwhile by
someone else is refused with nothing written, and the operator may apply on top of it. A write
that is done redirects back (post/redirect/get); one that fails for any other reason keeps the
reviewed change and the typed reason on screen with "Try again".
"""

from urllib.parse import parse_qsl, urlsplit

from flask import Blueprint, flash, redirect, request, url_for
from werkzeug.datastructures import MultiDict

from webapp.core.errors import ConflictError, PipelineError
from webapp.core.pipelines import PIPELINE_TYPES
from webapp.node.dashboard import dashboard
from webapp.node.db import get_store
from webapp.node.history import history_page, history_url
from webapp.web.auth import accounts_configured, current_operator
from webapp.web.render import render, wants_fragment

bp = Blueprint("changes", __name__)


def origin(target) -> str:
    """Return where a flow goes back to: /history with its filters, else the dashboard.

    Rebuilt from the parsed filters, never echoed: no open redirect, no header injection.
    """
    parts = urlsplit(target or "")
    if parts.path == url_for("history.index") and not (parts.scheme or parts.netloc):
        return history_url(MultiDict(parse_qsl(parts.query)))
    return url_for("dashboard.index")


def show(store, status=200, **panel):
    """Render the change panel on the page named by ``back`` (the dashboard by default)."""
    back = panel.setdefault("back", url_for("dashboard.index"))
    try:
        if back != url_for("dashboard.index"):
            return history_page(store, MultiDict(parse_qsl(urlsplit(back).query)), status, **panel)
        return dashboard(store, status, **panel)
    except PipelineError:
        if status < 400:
            raise
        # The database cannot even be read: still keep what the operator typed, with a retry.
        panel.update(
            current=None, buckets=store.buckets, in_dashboard=back == url_for("dashboard.index")
        )
        return render("error.html", "partials/_panel.html", status, **panel)


@bp.before_request
def refuse_anonymous():
    """Refuse writes, and the review of a revert, (403) from anyone not a logged-in operator."""
    if current_operator() or (
        request.method != "POST" and request.endpoint != "changes.review_revert"
    ):
        return None
    message = (
        "The dashboard is read-only: no operator accounts are configured."
        if not accounts_configured()
        else "Sign in as an operator to change the pipeline."
    )
    back = origin(request.values.get("next"))
    return show(get_store(), 403, step="denied", message=message, back=back)


def applied(result, store, back):
    """Report a write: the fresh panel for htmx, else flash and go back (post/redirect/get)."""
    change = result.change
    if not result.changed:
        message = f"Pipeline is already {change.type_label}; nothing written"
    elif change.reverts_to is not None:
        message = (
            f"Pipeline reverted to {change.pipeline_type} (change #{change.reverts_to}) "
            f"as change #{change.id}"
        )
    else:
        message = f"Pipeline set to {change.pipeline_type} (change #{change.id})"
    if wants_fragment():
        return dashboard(store, result=message, announce=message)
    flash(message)
    return redirect(back)


def attempt(write, store, **panel):
    """Run ``write()``; show a conflict (409), or any other refusal with "Try again"."""
    try:
        return applied(write(), store, panel["back"])
    except ConflictError as error:
        return show(store, 409, step="conflict", conflict=error, **panel)
    except PipelineError as error:
        # Busy (503), refused or unreadable: nothing was written; retrying is one click.
        return show(
            store, error.http_status, step="confirm", message=str(error), retry=True, **panel
        )


@bp.route("/change", methods=["GET", "POST"])
def review():
    """Check the change form and ask for confirmation (GET: the form, prefilled)."""
    from webapp.node.forms import ChangeForm

    store = get_store()
    current = store.current()
    if request.method == "GET":
        form = ChangeForm(formdata=request.args, current=current)  # a link may prefill choices
        form.base_on(current)  # never its base: always the state shown
        return show(store, form=form)
    form = ChangeForm(current=current, accepted=store.accepted_types())
    # The confirmation carries the change read now, whatever the request named: what it shows
    # ("from X") is what Apply is checked against. A base that moved since the form was shown
    # is said before Apply.
    named = form.base_on(current)
    if not form.validate():
        return show(store, 422, form=form)
    return show(store, step="confirm", form=form, moved=named not in (None, current.version))


@bp.post("/change/apply")
def apply():
    """Apply a reviewed change, unless the pipeline changed since it was reviewed."""
    from webapp.node.forms import ChangeForm

    store = get_store()
    try:
        current = store.current()
    except PipelineError:
        current = None  # the write below fails alike and is reported with what was typed
    form = ChangeForm(current=current, accepted=accepted_types(store))
    if not form.validate():
        return show(store, 422, form=form)
    return attempt(
        lambda: store.set(
            form.pipeline_type.data,
            updated_by=current_operator(),
            reason=form.reason.data,
            source="web",
            expect_id=form.expect_id.data,
        ),
        store,
        form=form,
        back=url_for("dashboard.index"),
    )


def accepted_types(store) -> tuple:
    """Return the types the table accepts; all of ours when it cannot be read (the write that
    follows fails alike and is reported with what was typed)."""
    try:
        return store.accepted_types()
    except PipelineError:
        return PIPELINE_TYPES


def revert_refusal(target, change_id, current=None, accepted=PIPELINE_TYPES):
    """Say why reverting to ``target`` is refused, with the status: missing or not ours (400),
    already in force (400), or a type this database's table refuses (422).

    Without ``current`` (when applying) "already in force" is left to the store: on a stale
    base, the conflict explains more.
    """
    from webapp.node.forms import type_refusal

    if target is None:
        return 400, f"There is no change #{change_id} to revert to."
    if not target.managed:
        return 400, f"Change #{target.id} is {target.type_label}: there is nothing to revert to."
    if current is not None and target.pipeline_type == current.pipeline_type:
        message = (
            f"{target.pipeline_type} is already the current pipeline: reverting changes nothing."
        )
        return 400, message
    refusal = type_refusal(target.pipeline_type, accepted)
    return (422, refusal) if refusal else None


@bp.get("/revert/<int:change_id>")
def review_revert(change_id):
    """Ask for confirmation before reverting to change ``change_id`` (a GET: reloading is safe)."""
    from webapp.node.forms import RevertForm

    store = get_store()
    current = store.current()
    back = origin(request.args.get("next"))
    target = store.get(change_id)
    refusal = revert_refusal(target, change_id, current, store.accepted_types())
    if refusal:
        return show(store, refusal[0], message=refusal[1], back=back)
    # The base is the change read now, never the link's (a crafted ?expect_id= is ignored).
    form = RevertForm(formdata=None, expect_id=current.version, next=back)
    return show(store, step="confirm", form=form, target=target, back=back)


@bp.post("/revert/<int:change_id>/apply")
def apply_revert(change_id):
    """Revert to change ``change_id`` as a new change, unless the pipeline changed meanwhile."""
    from webapp.node.forms import RevertForm

    store, form = get_store(), RevertForm()
    back = origin(form.next.data)
    target = store.get(change_id)
    refusal = revert_refusal(target, change_id, accepted=accepted_types(store))
    if refusal:
        return show(store, refusal[0], message=refusal[1], back=back)
    if not form.validate():
        return show(store, 422, step="confirm", form=form, target=target, back=back)
    return attempt(
        lambda: store.revert(
            target.id,
            updated_by=current_operator(),
            reason=form.reason.data or None,
            source="web",
            expect_id=form.expect_id.data,
        ),
        store,
        form=form,
        target=target,
        back=back,
    )


def init_app(app) -> None:
    app.register_blueprint(bp)
