"""The fleet centre: every node's pipeline, last report and history in one place (issue 17).

``create_app()`` builds its Flask app (gunicorn: ``webapp.fleet:create_app()``; commands:
``flask --app webapp.fleet fleet ...``); it is imported only when called. Parts: the store
(schema, engine, store, store_write, migrate and migrations/: all of the centre's SQL), report
checks (report), ingest (POST /api/fleet/report), the JSON API, probes, metrics, commands, and
the pages.

The top of the layer order beside ``webapp.node``: may import ``webapp.web``, ``webapp.cli``,
``webapp.notify``, ``webapp.accounts`` and ``webapp.core``; never ``webapp.node`` (and the node
app never imports the fleet). It never opens a sensor database.
"""

__all__ = ["create_app"]


def create_app(test_config=None):
    """Build the fleet centre's app (see :func:`webapp.fleet.app.create_app`)."""
    from webapp.fleet.app import create_app as factory

    return factory(test_config)
