"""Both entrances of the ``pipeline`` command group, in process, for the CLI tests."""

from click.testing import CliRunner

from webapp.cli import pipeline as cli_module


class Entrance:
    """Invoke ``pipeline ARGS`` in process through one entrance, on the test database."""

    def __init__(self, name, app, db_path):
        self.name, self.app, self.db_path = name, app, db_path

    def __call__(self, *args, env=None, **kwargs):
        args = [str(arg) for arg in args]
        if self.name == "flask":
            runner = self.app.test_cli_runner()
            return runner.invoke(args=["pipeline", *args], env=env, **kwargs)
        # The console script reads its settings from the environment, as in production.
        env = {"PIPELINE_DB": str(self.db_path), **(env or {})}
        return CliRunner().invoke(cli_module.main, args, env=env, prog_name=self.name, **kwargs)


def with_settings(cli, tmp_path, monkeypatch, **config):
    """Return an entrance whose settings differ (``config`` keys are ``PIPELINE_*`` names)."""
    from webapp import create_app

    for name, value in config.items():
        monkeypatch.setenv(name, str(value))
    db_path = config.get("PIPELINE_DB", cli.db_path)
    app = create_app({"TESTING": True, "DB": str(db_path), "SECRET_KEY": "x"})
    return Entrance(cli.name, app, db_path)
