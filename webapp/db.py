"""Flask glue for the store: one :class:`PipelineStore` per app context, closed at teardown."""

from pathlib import Path

from flask import current_app, g

from .pipelines import bucket_map
from .store import PipelineStore

DEFAULT_DB_NAME = "pipeline.db"


def buckets_from_config(config) -> dict[str, str]:
    """Return the bucket mapping with ``PIPELINE_BUCKET_*`` overrides from the app config."""
    return bucket_map(
        {f"PIPELINE_{key}": value for key, value in config.items() if key.startswith("BUCKET_")}
    )


def open_store(app, db_path=None) -> PipelineStore:
    """Open a store on ``db_path``, else ``PIPELINE_DB``, else the embedded default database."""
    path = db_path or app.config.get("DB")
    create = False
    if not path:
        # The embedded default database is ours to create; any named path must already exist.
        Path(app.instance_path).mkdir(parents=True, exist_ok=True)
        path, create = Path(app.instance_path) / DEFAULT_DB_NAME, True
    return PipelineStore(
        path,
        create=create,
        write_timeout=app.config["WRITE_TIMEOUT"],
        buckets=app.config["BUCKETS"],
    )


def get_store() -> PipelineStore:
    """Return this app context's store, opening it on first use."""
    if "store" not in g:
        g.store = open_store(current_app)
    return g.store


def close_store(exception=None) -> None:
    store = g.pop("store", None)
    if store is not None:
        store.close()


def init_app(app) -> None:
    app.config["BUCKETS"] = buckets_from_config(app.config)
    app.teardown_appcontext(close_store)
