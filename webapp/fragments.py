"""Full page or fragment: one helper decides, so each template serves both (as in Canaille).

An htmx request that is not boosted wants only the fragment it will swap in; everything else (a
plain browser load, a form post without JavaScript, a boosted link) wants the whole page, which
``{% include %}``s the very same partial.
"""

from flask import render_template
from htmx_flask import request  # flask's request, with the htmx headers as `request.htmx`


def wants_fragment() -> bool:
    """Return True for an htmx request that swaps part of the page (not a boosted navigation)."""
    htmx = request.htmx
    # A history restore (back button after hx-push-url, cache missed) needs the whole page too.
    return bool(htmx) and not (htmx.boosted or htmx.history_restore_request)


def render(page_template: str, fragment_template: str, status: int = 200, **context):
    """Render the fragment for htmx, else the page (which includes that fragment)."""
    template = fragment_template if wants_fragment() else page_template
    return render_template(template, **context), status
