"""Schema migrations: Alembic, run from code (the revisions live in migrations/; no alembic.ini).

``schema_status`` says where a store stands (empty, current, due, or ahead of this code);
``upgrade`` brings it to the head revision in one transaction, under a lock (SQLite's
IMMEDIATE transaction, PostgreSQL's advisory lock), so two workers or hosts starting on an
empty store create it once.
"""

import functools
import os
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from .engine import unavailable

MIGRATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")
LOCK_ID = 0x706D666C  # "pmfl": the advisory lock every centre host takes to migrate


@dataclass(frozen=True)
class SchemaStatus:
    """Where the store stands: ``current`` revision (None: empty) and this code's ``head``."""

    current: str | None
    head: str

    @property
    def ready(self) -> bool:
        return self.current == self.head

    def problem(self) -> str | None:
        """Return why the store cannot serve this code, or None."""
        if self.ready:
            return None
        if self.current is None:
            return "the fleet store is empty (the centre creates its schema at start)"
        if self.current in revisions():
            return (
                f"a migration is due: the store is at revision {self.current}, this code needs "
                f"{self.head}; run: flask --app webapp.fleet fleet db upgrade"
            )
        return f"the store is at revision {self.current}, unknown to this code (a newer centre?)"


def alembic_config():
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    return config


@functools.cache  # the revision files ship with the code: read once per process
def script():
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config())


def revisions() -> set[str]:
    return {revision.revision for revision in script().walk_revisions()}


def schema_status(engine) -> SchemaStatus:
    """Return the store's revision and this code's head."""
    from alembic.runtime.migration import MigrationContext

    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    except DBAPIError as error:
        raise unavailable(error) from error
    return SchemaStatus(current, script().get_current_head())


def upgrade(engine, revision: str = "head") -> SchemaStatus:
    """Migrate the store to ``revision`` (all of it, or nothing); return the new status."""
    from alembic import command

    config = alembic_config()
    try:
        with (
            engine.connect().execution_options(write=True) as connection,
            connection.begin(),
        ):
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": LOCK_ID})
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    except DBAPIError as error:
        raise unavailable(error) from error
    return schema_status(engine)


def create_if_empty(engine) -> SchemaStatus:
    """Create the schema on an empty store; leave a store that has one as it is."""
    status = schema_status(engine)
    if status.current is None:
        status = upgrade(engine)
    return status
