"""`twotower`: the demo, the weekly retrain, the database and the UIs from one command."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import click

from twotower_pipeline.settings import Settings


def _settings() -> Settings:
    settings = Settings.from_env()
    settings.export_defaults()
    return settings


def _fail(message: str) -> None:
    click.secho(message, fg="red", err=True)
    sys.exit(1)


def _me() -> str:
    """How to run this command again, as typed in the current folder (``twotower`` when it is on
    the PATH, else e.g. ``.venv/bin/twotower``)."""
    on_path = shutil.which("twotower")
    here = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0].endswith("twotower") else None
    if on_path and (here is None or os.path.samefile(on_path, here)):
        return "twotower"
    if here is None:
        here = os.path.join(os.path.dirname(sys.executable), "twotower")
    relative = os.path.relpath(here)
    return relative if not relative.startswith("..") else here


def _running_database_url(settings: Settings) -> str:
    """The database for a read-only command: a stopped embedded server is not started unasked."""
    from twotower_pipeline import db as database
    from twotower_pipeline.db.embedded import EmbeddedPostgres

    if settings.uses_embedded_database and not EmbeddedPostgres(settings.embedded_database_dir).is_running():
        _fail(f"the embedded database in {settings.embedded_database_dir} is stopped; start it with "
              f"`{_me()} db start`")
    return database.database_url(settings)


class _Commands(click.Group):
    """Known failures of the embedded database end the command with their one-line reason."""

    def invoke(self, ctx: click.Context):
        from twotower_pipeline.db.embedded import EmbeddedDatabaseError

        try:
            return super().invoke(ctx)
        except EmbeddedDatabaseError as error:
            _fail(str(error))


# Full help texts: Click would cut each description to the terminal's width with "...".
@click.group(cls=_Commands, help=__doc__, context_settings={"max_content_width": 140, "terminal_width": 140})
def main() -> None:
    pass


# -- database ------------------------------------------------------------------------------
@main.group(help="The app database (the embedded one unless TWOTOWER_DATABASE_URL is set).")
def db() -> None:
    pass


@db.command("migrate", help="Apply the pending supabase/migrations to the configured database.")
def db_migrate() -> None:
    from twotower_pipeline import db as database
    from twotower_pipeline.db.migrations import MigrationError, apply_migrations

    settings = _settings()
    try:
        applied = apply_migrations(database.database_url(settings), settings.migrations_dir)
    except MigrationError as error:
        _fail(str(error))
    if applied:
        for migration in applied:
            click.echo(f"applied {migration.version}_{migration.name}")
    else:
        click.echo("schema is up to date")


@db.command("url", help="Print the database URL (starts the embedded server if needed, and leaves it running).")
def db_url() -> None:
    from twotower_pipeline import db as database

    click.echo(database.database_url(_settings()))


@db.command("start", help="Start the embedded database server (it keeps running until `db stop`).")
def db_start() -> None:
    from twotower_pipeline.db.embedded import EmbeddedPostgres

    settings = _settings()
    if not settings.uses_embedded_database:
        _fail("TWOTOWER_DATABASE_URL is set: that database is not managed here")
    server = EmbeddedPostgres(settings.embedded_database_dir)
    was_running = server.is_running()
    server.ensure_running()
    click.echo(f"embedded database {'already ' if was_running else ''}running on 127.0.0.1:{server.port}; "
               f"stop it with `{_me()} db stop`")


@db.command("stop", help="Stop the embedded database server.")
def db_stop() -> None:
    from twotower_pipeline.db.embedded import EmbeddedPostgres

    settings = _settings()
    if not settings.uses_embedded_database:
        _fail("TWOTOWER_DATABASE_URL is set: that database is not managed here")
    stopped = EmbeddedPostgres(settings.embedded_database_dir).stop()
    click.echo("embedded database stopped" if stopped else "embedded database was not running")


# -- training ------------------------------------------------------------------------------
def _print_outcome(outcome) -> None:
    click.echo("\nTime per asset:")
    for step, seconds in outcome.step_seconds.items():
        click.echo(f"  {step:<28} {seconds:8.1f} s")
    click.echo(f"  {'total':<28} {sum(outcome.step_seconds.values()):8.1f} s")
    for reason in outcome.reasons:
        click.secho(f"  {reason}", fg="red")


def _retrain(settings: Settings) -> bool:
    from twotower_pipeline import db as database
    from twotower_pipeline.db.migrations import apply_migrations
    from twotower_pipeline.retrain import run_weekly_retrain

    apply_migrations(database.database_url(settings), settings.migrations_dir)
    click.echo("running the weekly retrain (validate -> train -> export -> embed -> activate) ...")
    outcome = run_weekly_retrain(settings)
    _print_outcome(outcome)
    if not outcome.success:
        click.secho(f"\nretrain stopped (Dagster run {outcome.run_id}); the active model is unchanged:", fg="red")
        for reason in outcome.reasons:
            click.secho(f"  - {reason}", fg="red")
    return outcome.success


@main.command(help="Run the weekly retrain job once, in this process, against the configured database.")
def retrain() -> None:
    settings = _settings()
    if not _retrain(settings):
        sys.exit(1)
    _print_summary(settings, users=0)


@main.command(help="Active version, its metrics and age, the last retrain, partitions missing or stale.")
def status() -> None:
    import dagster as dg

    from twotower_pipeline import db as database
    from twotower_pipeline.retrain import ensure_dagster_home
    from twotower_pipeline.status import pipeline_status

    settings = _settings()
    ensure_dagster_home(settings)
    with database.connect(_running_database_url(settings)) as conn:
        report = pipeline_status(conn, dg.DagsterInstance.get())
    for line in report.lines():
        click.echo(line)


@main.command(help="Re-activate an earlier kept model version (default: the previously active one).")
@click.option("--to", "to_version", default=None, help="version to re-activate, e.g. tt-20261123-030012")
def rollback(to_version: str | None) -> None:
    from twotower_pipeline import db as database
    from twotower_pipeline import vector_store
    from twotower_pipeline.publishing import activate, load_version
    from twotower_pipeline.resources import MlflowTracking
    from twotower_pipeline.vector_store import KEEP_VERSIONS

    settings = _settings()
    url = database.database_url(settings)
    with database.connect(url) as conn:
        active = vector_store.active_version(conn)
        target = to_version or vector_store.rollback_target(conn)
        if target is None:
            _fail("no earlier version with kept vectors to roll back to; pass --to VERSION")
        record = vector_store.version_record(conn, target)
    if record is None:
        with database.connect(url) as conn:
            listing = _version_lines(vector_store.version_summaries(conn))
        _fail(f"model version {target} is unknown; the versions are:\n" + "\n".join(listing))
    if record.is_active:
        click.echo(f"{target} is already the active version")
        return
    try:
        activation = activate(url, load_version(record, settings.cache_dir), now=datetime.now(UTC),
                              keep_versions=KEEP_VERSIONS, expected_active=active)
    except (vector_store.ActivationRefused, OSError) as error:
        _fail(f"rollback to {target} refused, {active or 'no version'} stays active: {error}")
    MlflowTracking(tracking_uri=settings.mlflow_tracking_uri).set_alias(target, "champion")
    click.echo(f"active model version: {target} (was {activation.previous or 'none'})")


@main.command(help="Set up everything on the embedded default and run the whole pipeline on demo data.")
@click.option("--videos", default=50_000, show_default=True, help="catalogue size")
@click.option("--users", default=1_000, show_default=True, help="users who like videos")
@click.option("--likes", default=100_000, show_default=True, help="likes over the last six months")
@click.option("--seed", default=7, show_default=True, help="demo data seed")
@click.option("--lang", type=click.Choice(["ja", "en"]), default="ja", show_default=True,
              help="language of the demo catalogue's titles, descriptions, genres, makers, performers and tags "
                   "(the same hidden structure in both)")
@click.option("--reset", is_flag=True, help="replace the demo data already loaded")
def demo(videos: int, users: int, likes: int, seed: int, lang: str, reset: bool) -> None:
    from twotower_pipeline import db as database
    from twotower_pipeline.db.migrations import apply_migrations
    from twotower_pipeline.demo_data import (
        DemoDataError,
        DemoSize,
        generate_demo_data,
        load_demo_data,
    )

    started = time.perf_counter()
    settings = _settings()
    if reset and not settings.uses_embedded_database:
        _fail("--reset empties the app's tables; it only works on the embedded database, not on "
              "TWOTOWER_DATABASE_URL")
    url = database.database_url(settings)
    applied = apply_migrations(url, settings.migrations_dir)
    click.echo(f"database ready ({'embedded' if settings.uses_embedded_database else 'configured'}), "
               f"{len(applied)} migration(s) applied")
    with database.connect(url) as conn:
        existing = conn.execute("select count(*) from public.videos").fetchone()[0]
    if existing and not reset:
        click.echo(f"using the {existing} videos already in the database (pass --reset to regenerate)")
    else:
        size = DemoSize(videos=videos, users=users, likes=likes, seed=seed)
        t0 = time.perf_counter()
        data = generate_demo_data(size, datetime.now(UTC), lang=lang)
        with database.connect(url) as conn:
            try:
                counts = load_demo_data(conn, data, replace=reset)
            except DemoDataError as error:
                _fail(str(error))
        click.echo("demo data loaded in {:.1f} s: {}".format(
            time.perf_counter() - t0, ", ".join(f"{k} {v}" for k, v in counts.items())))
    ok = _retrain(settings)
    _print_summary(settings, users=3)
    click.echo(f"\ndone in {time.perf_counter() - started:.0f} s")
    if not ok:
        sys.exit(1)


def _print_summary(settings: Settings, users: int) -> None:
    from collections import Counter

    from twotower_pipeline import db as database
    from twotower_pipeline import vector_store
    from twotower_pipeline.model.features import normalise_name

    url = database.database_url(settings)
    with database.connect(url) as conn:
        record = vector_store.active_record(conn)
        active = None if record is None else (record.version, record.metrics, record.activated_at)
        counts = conn.execute(
            "select (select count(*) from public.videos), (select count(*) from public.likes), "
            "(select count(distinct user_id) from public.likes)"
        ).fetchone()
        click.echo(f"\nCatalogue: {counts[0]} videos, {counts[1]} likes by {counts[2]} users")
        if active is None:
            click.secho("No active model version.", fg="yellow")
            return
        version, metrics, activated_at = active
        click.secho(f"Active model version: {version} (activated {activated_at:%Y-%m-%d %H:%M:%S %Z})", bold=True)
        latest = conn.execute(
            "select version, status, status_reason from public.embedding_model_versions "
            "where model_type = 'item_tower' order by created_at desc limit 1").fetchone()
        if latest and latest[1] == "rejected":
            click.secho(f"Latest candidate {latest[0]} was rejected by the promotion gate: {latest[2]}", fg="yellow")
        click.echo(f"  {'metric':<20} {'model':>8} {'popularity':>11} {'item_knn':>11}")
        for name in ("recall_at_50", "ndcg_at_10", "precision_at_10", "auc", "coverage_at_50",
                     "genre_entropy_at_10"):
            if name in metrics:
                baselines = [metrics.get(f"{baseline}_{name}") for baseline in ("popularity", "item_knn")]
                shown = " ".join(f"{b:11.4f}" if b is not None else f"{'-':>11}" for b in baselines)
                click.echo(f"  {name:<20} {metrics[name]:8.4f} {shown}")
        vectors = conn.execute(
            "select (select count(*) from public.two_tower_item_embeddings where model_version = %s), "
            "(select count(*) from public.two_tower_user_embeddings where model_version = %s)",
            (version, version),
        ).fetchone()
        click.echo(f"  vectors: {vectors[0]} videos, {vectors[1]} users")
        demo_users = conn.execute(
            "select user_id from public.likes where user_id is not null group by user_id "
            "order by count(*) desc, user_id limit %s", (users,)
        ).fetchall()
        for (user_id,) in demo_users:
            genres = conn.execute(
                "select v.genre from public.likes l join public.videos v on v.id = l.video_id "
                "where l.user_id = %s and v.genre is not null", (user_id,)
            ).fetchall()
            # Counted as the model reads them: 「ﾄﾞﾗﾏ」 and 「ドラマ」 are one genre.
            liked = Counter(normalise_name(genre) for (genre,) in genres).most_common(3)
            click.echo(f"\nTop 10 for user {user_id} (likes mostly {', '.join(g for g, _ in liked)}):")
            rows = conn.execute(
                "select r.score, v.genre, v.maker, v.title from public.recommend_videos(%s, 10) r "
                "join public.videos v on v.id = r.video_id order by r.score desc", (user_id,)
            ).fetchall()
            for rank, (score, genre, maker, title) in enumerate(rows, 1):
                click.echo(f"  {rank:>2}. {score:6.3f}  {genre:<14} {maker:<14} {title[:50]}")
    me = _me()
    click.echo(
        f"\nBoth UIs on this state (in the foreground; Ctrl-C stops them):  {me} ui\n"
        f"  Dagster http://127.0.0.1:3000 and MLflow http://127.0.0.1:5000\n"
        f"Model versions and rollback targets:  {me} versions\n"
        f"Connect with psql:                    psql \"$({me} db url)\"\n"
        f"State folder: {settings.home}"
    )
    if settings.uses_embedded_database:
        from twotower_pipeline.db.embedded import EmbeddedPostgres

        server = EmbeddedPostgres(settings.embedded_database_dir)
        if server.is_running():
            click.echo(f"The embedded database is still running (127.0.0.1:{server.port}): stop it with "
                       f"`{me} db stop`")


def _version_lines(summaries) -> list[str]:
    now = datetime.now(UTC)
    lines = [f"  {'version':<22} {'status':<10} {'age':>8} {'recall@50':>10} {'ndcg@10':>8}  vectors"]
    for v in summaries:
        age = now - v.created_at
        shown_age = f"{age.days} d" if age.days else f"{age.seconds // 3600} h"
        recall, ndcg = v.metrics.get("recall_at_50"), v.metrics.get("ndcg_at_10")
        lines.append(f"  {v.version:<22} {('ACTIVE' if v.is_active else v.status):<10} {shown_age:>8} "
                     f"{recall if recall is None else format(recall, '.4f'):>10} "
                     f"{ndcg if ndcg is None else format(ndcg, '.4f'):>8}  "
                     f"{'kept (rollback target)' if v.vectors_kept and not v.is_active else 'kept' if v.vectors_kept else 'dropped'}")
    return lines


@main.command(short_help="The model versions: status, age, metrics, and whether each can be rolled back to.",
              help="List the model versions: status, age, served Recall@50 and NDCG@10 on their holdout, "
                   "and whether their vectors are kept (what `twotower rollback --to` can re-activate).")
def versions() -> None:
    from twotower_pipeline import db as database
    from twotower_pipeline import vector_store

    settings = _settings()
    with database.connect(_running_database_url(settings)) as conn:
        summaries = vector_store.version_summaries(conn)
    if not summaries:
        click.echo("no model version yet: run `twotower retrain` (or `twotower demo`)")
        return
    for line in _version_lines(summaries):
        click.echo(line)


# -- UIs -----------------------------------------------------------------------------------
def _serve(commands: list[list[str]], ready: dict[str, str] | None = None, first: int = 0) -> None:
    """Run the servers until Ctrl-C or SIGTERM, then stop them all. The ``first`` commands (a code
    server) start, and answer, before the others."""
    environment = {**os.environ, **_LIGHT_MLFLOW}
    processes = [subprocess.Popen(command, start_new_session=True, env=environment) for command in commands[:first]]
    for command in commands[:first]:
        _code_server_ready(command)
    processes += [subprocess.Popen(command, start_new_session=True, env=environment) for command in commands[first:]]

    def stop(*_):
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if ready:
        _announce_when_ready(ready)
        click.echo("Ctrl-C stops " + ("both" if len(ready) > 1 else "it"))
    while all(process.poll() is None for process in processes):
        time.sleep(0.5)
    stop()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _dagster_commands(settings: Settings, port: int) -> list[list[str]]:
    """One code server shared by the webserver and the daemon. Left to themselves, each starts its own,
    and the daemon replaces its own every 60 s (it reloads the workspace), ~400 MB at each start."""
    bin_dir = os.path.dirname(sys.executable)
    code_port = _free_port()
    workspace = settings.dagster_home / "ui-workspace.yaml"
    workspace.write_text(
        "# Written by `twotower ui`: the webserver and the daemon share one code server.\n"
        "load_from:\n  - grpc_server:\n      host: 127.0.0.1\n"
        f"      port: {code_port}\n      location_name: twotower_pipeline\n")
    return [[os.path.join(bin_dir, "dagster"), "code-server", "start", "-m", "twotower_pipeline.definitions",
             "-h", "127.0.0.1", "-p", str(code_port), "--log-level", "warning"],
            [os.path.join(bin_dir, "dagster-webserver"), "-w", str(workspace), "-h", "127.0.0.1", "-p", str(port)],
            [os.path.join(bin_dir, "dagster-daemon"), "run", "-w", str(workspace)]]


def _code_server_ready(command: list[str], timeout: float = 120.0) -> None:
    """Wait until the code server answers, so the webserver and the daemon find it at once."""
    port = command[command.index("-p") + 1]
    check = [os.path.join(os.path.dirname(sys.executable), "dagster"), "api", "grpc-health-check", "-p", port]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if subprocess.run(check, capture_output=True).returncode == 0:
            return
        time.sleep(1)
    click.secho(f"the Dagster code server did not answer within {timeout:.0f} s", fg="yellow")


def _mlflow_command(settings: Settings, port: int) -> list[str]:
    return [os.path.join(os.path.dirname(sys.executable), "mlflow"), "server",
            "--backend-store-uri", settings.mlflow_tracking_uri,
            "--default-artifact-root", settings.mlflow_artifacts_dir.as_uri(),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]


# MLflow's server starts background job workers (Huey consumers) for its GenAI features by
# default: ~1.7 GB on a laptop, for nothing this project uses.
_LIGHT_MLFLOW = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def _announce_when_ready(urls: dict[str, str], timeout: float = 180.0) -> None:
    """Print each UI's address once it answers (they take a while to start on two cores)."""
    import urllib.request

    pending, deadline = dict(urls), time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for name, url in list(pending.items()):
            try:
                with urllib.request.urlopen(url, timeout=2):
                    click.secho(f"{name} is ready: {url}", fg="green")
                    del pending[name]
            except OSError:
                pass
        time.sleep(1)
    for name, url in pending.items():
        click.secho(f"{name} did not answer within {timeout:.0f} s at {url}; see its output above", fg="yellow")


@main.command(short_help="Both UIs, Dagster and MLflow, in the foreground (Ctrl-C stops them).",
              help="Start both UIs for this state in the foreground: the Dagster webserver and daemon "
                   "(schedules and sensors run) and the MLflow UI, on 127.0.0.1. Ctrl-C stops them.")
@click.option("--port", default=3000, show_default=True, help="Dagster UI port")
@click.option("--mlflow-port", default=5000, show_default=True, help="MLflow UI port")
def ui(port: int, mlflow_port: int) -> None:
    from twotower_pipeline.retrain import ensure_dagster_home

    settings = _settings()
    ensure_dagster_home(settings)
    _running_or_started(settings)  # the code location reads the database; have it running
    click.echo(f"starting Dagster (DAGSTER_HOME={settings.dagster_home}) and MLflow "
               f"({settings.mlflow_tracking_uri}) ...")
    _serve([*_dagster_commands(settings, port), _mlflow_command(settings, mlflow_port)],
           ready={"Dagster UI": f"http://127.0.0.1:{port}/server_info",
                  "MLflow UI": f"http://127.0.0.1:{mlflow_port}/health"}, first=1)


@main.command("mlflow-ui", help="Start only the MLflow UI on 127.0.0.1 for this state's tracking store.")
@click.option("--port", default=5000, show_default=True)
def mlflow_ui(port: int) -> None:
    settings = _settings()
    _serve([_mlflow_command(settings, port)], ready={"MLflow UI": f"http://127.0.0.1:{port}/health"})


def _running_or_started(settings: Settings) -> str:
    from twotower_pipeline import db as database

    return database.database_url(settings)


if __name__ == "__main__":
    main()
