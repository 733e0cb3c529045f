"""Pipeline Manager: see and change which pipeline the edge uploader applies.

``create_app()`` builds the Flask app (gunicorn: ``webapp:create_app()``). It is imported only
when called, so that ``webapp.uploader``, ``webapp.core.store`` and the ``pipeline-manager`` command
line load no web stack.
"""

__all__ = ["create_app"]


def create_app(test_config=None):
    """Build the dashboard app (see :func:`webapp.node.app.create_app`)."""
    from webapp.node.app import create_app as factory

    return factory(test_config)
