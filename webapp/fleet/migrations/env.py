"""Alembic's environment, run programmatically by webapp.fleet.migrate (no alembic.ini).

The caller passes the connection (inside its own transaction and lock) in ``config.attributes``.
"""

from alembic import context

from webapp.fleet.schema import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying
)
with context.begin_transaction():
    context.run_migrations()
