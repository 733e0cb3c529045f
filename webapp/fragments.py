"""Full page or fragment: one helper decides, so each template serves both (as in Canaille).

An htmx request that is not boosted wants only the fragment it will swap in; everything else (a
plain browser load, a form post without JavaScript, a boosted link) wants the whole page, which
``{% include %}``s the very same partial.
"""

from flask import render_template, request


def wants_fragment() -> bool:
    """Return True for an htmx request that swaps part of the page (not a boosted navigation)."""
    headers = request.headers
    # A history restore (back button after hx-push-url, cache missed) needs the whole page too.
    whole_page = "true" in (headers.get("HX-Boosted"), headers.get("HX-History-Restore-Request"))
    return headers.get("HX-Request") == "true" and not whole_page


def render(page_template: str, fragment_template: str, status: int = 200, **context):
    """Render the fragment for htmx, else the page (which includes that fragment)."""
    template = fragment_template if wants_fragment() else page_template
    return render_template(template, **context), status
