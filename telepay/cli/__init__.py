"""`telepay ...`: the operator's commands."""

from __future__ import annotations

import sys
from importlib import metadata

import click
from sqlalchemy import text

from telepay.cli.alerts import alerts
from telepay.cli.backup import backup, restore
from telepay.cli.online import wallet
from telepay.cli.common import engine_or_exit, fail_config, lookalikes_or_exit, secret_values, settings_or_exit
from telepay.config import ConfigError
from telepay.config_load import masked
from telepay.cli.payments import payments
from telepay.cli.payouts import payouts, report
from telepay.cli.subscribers import subscribers
from telepay.cli.stars import stars, texts
from telepay.logs import configure_logging
from telepay.ops.version import version


@click.group()
@click.version_option(version(), "--version", prog_name="telepay", message="%(prog)s %(version)s")
def main() -> None:
    """TelePay: paid access to private Telegram channels, donations and automatic payouts."""


def _roles(_context, _parameter, value: str) -> frozenset[str]:
    from telepay.roles import parse_roles

    try:
        return parse_roles(value)
    except ValueError as error:
        raise click.BadParameter(str(error))


@main.command()
@click.option("--roles", default="bot,api,worker", show_default=True, callback=_roles,
              help="What this process runs: bot (the one Telegram poller per token), api (webhooks), "
                   "worker (jobs and timers). Any number of api and worker processes may share a database.")
@click.option("--no-payouts", is_flag=True, help="Run everything but payouts (payout jobs wait queued, no batch "
                                                 "starts): after a restore, until payouts are reconciled.")
def run(roles: frozenset[str], no_payouts: bool) -> None:
    """Run the bot, the job worker and the webhook API (or the roles asked for)."""
    import logging

    from telepay.roles import BotLockHeld, BotLockLost
    from telepay.models.engine import describe
    from telepay.models.migrate import SchemaBehind
    from telepay.ops.signals import StopSignals
    from telepay.ops.startup import DatabaseUnavailable

    signals = StopSignals().install()  # first: a SIGTERM from here on exits 0, cleanly
    settings = settings_or_exit()
    configure_logging(settings.log_format, settings.log_level, secrets=secret_values(settings))
    log = logging.getLogger("telepay.run")
    # Fatal errors go through the log, so LOG_FORMAT=json gets JSON lines for them too,
    # with every secret masked (a rejected bot token is in the Bot API's error URL).
    for warning in lookalikes_or_exit():
        log.warning("%s", warning)
    try:
        # Checked before the runtime is imported (the bot, web3, the API: about a second), so
        # that missing or bad settings are answered at once.
        settings.require_for_run()
        from telepay import runtime

        runtime.run(settings, signals, roles, payouts=not no_payouts)
    except (ConfigError, BotLockHeld) as error:
        log.critical("telepay cannot start: %s", error)
        sys.exit(2)
    except BotLockLost as error:
        log.critical("telepay stopped: %s", error)
        sys.exit(1)
    except SchemaBehind as error:
        # Say which database: on the embedded one, "run db upgrade" may be the wrong advice.
        log.critical("telepay cannot start: %s (database: %s)", error, describe(settings))
        if not (settings.database_url or settings.cloud_sql_connection_name):
            log.critical("neither DATABASE_URL nor CLOUD_SQL_CONNECTION_NAME is set, so this is the embedded "
                         "development database; if you meant your server, set DATABASE_URL (check its "
                         "spelling with `telepay check-config`)")
        sys.exit(2)
    except DatabaseUnavailable as error:
        log.critical("telepay cannot start: %s", error)
        sys.exit(1)
    except Exception as error:  # noqa: BLE001 - anything else still ends as one logged line + trace
        log.critical("telepay cannot start: %s: %s", type(error).__name__, error, exc_info=True)
        sys.exit(1)


@main.command("check-config")
@click.option("--online", is_flag=True, help="Also ask Telegram, NOWPayments, ChangeNOW and the RPC with the "
                                             "real credentials (one OK/FAIL line each).")
def check_config(online: bool) -> None:
    """Print the effective settings (secrets masked) and test the database."""
    from telepay.models import migrate
    from telepay.models.engine import describe

    settings = settings_or_exit()
    for name, value in masked(settings).items():
        click.echo(f"{name:28} {value}")
    click.echo("")
    for warning in lookalikes_or_exit():
        click.echo(f"warning: {warning}", err=True)
    click.echo("ChangeNOW: ask partners@changenow.io (\"Special partner fields\") to enable userId for your "
               "key, so a payout's exchange is found by its tag (docs/deploy.md)")
    try:
        engine = engine_or_exit(settings)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        at, want = migrate.current(engine), migrate.head()
        click.echo(f"database: {describe(settings)}: reachable; schema {at or 'empty'} (code needs {want})")
    except Exception as error:  # noqa: BLE001 - any failure is the answer to "does it work?"
        click.echo(f"database: {describe(settings)}: NOT reachable: {type(error).__name__}: {error}", err=True)
        sys.exit(1)
    try:
        settings.require_for_run()
    except ConfigError as error:
        fail_config(error)
    if online:
        from telepay.cli.online import online_checks

        click.echo("")
        passed = online_checks(settings, engine)
        engine.dispose()
        if not passed:
            click.echo("telepay: some outside services refused or did not answer (FAIL above)", err=True)
            sys.exit(1)
    else:
        engine.dispose()
    click.echo("configuration OK")


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
    from telepay.models import migrate

    settings = settings_or_exit()
    configure_logging(settings.log_format, settings.log_level, secrets=secret_values(settings))
    engine = engine_or_exit(settings)
    migrate.upgrade(engine, revision)
    click.echo(f"database at {migrate.current(engine)}")
    engine.dispose()


@db.command("downgrade")
@click.argument("revision")
def db_downgrade(revision: str) -> None:
    """Undo migrations down to REVISION (with the release that made them; see docs/deploy.md)."""
    from telepay.models import migrate

    settings = settings_or_exit()
    configure_logging(settings.log_format, settings.log_level, secrets=secret_values(settings))
    engine = engine_or_exit(settings)
    try:
        migrate.downgrade(engine, revision)
    except ValueError as error:
        raise click.ClickException(str(error))
    click.echo(f"database at {migrate.current(engine) or 'nothing'}")
    engine.dispose()


@db.command("current")
def db_current() -> None:
    """Show the schema revision of the database and of the code."""
    from telepay.models import migrate

    engine = engine_or_exit(settings_or_exit())
    click.echo(f"database: {migrate.current(engine) or 'empty'}; code: {migrate.head()}")
    engine.dispose()


@db.command("revision")
@click.option("-m", "--message", required=True)
def db_revision(message: str) -> None:
    """Autogenerate a migration from the models (for developers)."""
    from telepay.models import migrate

    migrate.revision(engine_or_exit(settings_or_exit()), message)


@main.group()
def jobs() -> None:
    """Durable jobs: list, retry, cancel."""


def _queue():
    from telepay.models.engine import make_session_factory
    from telepay.services.jobs import JobQueue

    return JobQueue(make_session_factory(engine_or_exit(settings_or_exit())))


@jobs.command("list")
@click.option("--state", type=click.Choice(["queued", "running", "done", "dead", "cancelled"]))
@click.option("--kind")
@click.option("--limit", default=50, show_default=True)
def jobs_list(state: str | None, kind: str | None, limit: int) -> None:
    """Recent jobs, newest first, with their last error."""
    from telepay.models import JobState

    queue = _queue()
    for kind_name, counts in sorted(queue.depth().items()):
        click.echo(f"{kind_name}: " + ", ".join(f"{s} {n}" for s, n in sorted(counts.items())))
    click.echo("")
    for job in queue.list(JobState(state) if state else None, kind, limit):
        error = (job.last_error or "").splitlines()[0][:80] if job.last_error else ""
        click.echo(f"{job.id:>8} {job.kind:24} {job.state.value:10} attempts={job.attempts:<4} "
                   f"run_at={job.run_at:%Y-%m-%d %H:%M:%S} {error}")


@jobs.command("retry")
@click.argument("job_id", type=int)
def jobs_retry(job_id: int) -> None:
    """Run a dead or cancelled job again now."""
    from telepay.services.jobs import JobNotFound

    try:
        _queue().retry(job_id)
    except JobNotFound:
        raise click.ClickException(f"no job {job_id}")
    except ValueError as error:
        raise click.ClickException(str(error))
    click.echo(f"job {job_id} queued")


@jobs.command("cancel")
@click.argument("job_id", type=int)
def jobs_cancel(job_id: int) -> None:
    """Cancel a queued or dead job."""
    from telepay.services.jobs import JobNotFound

    try:
        _queue().cancel(job_id)
    except JobNotFound:
        raise click.ClickException(f"no job {job_id}")
    except ValueError as error:
        raise click.ClickException(str(error))
    click.echo(f"job {job_id} cancelled")


@main.command()
@click.option("--body", "body_text", help="The JSON body, exactly as it will be sent (default: read stdin).")
@click.option("--url", default="http://127.0.0.1:8080/webhooks/notification", show_default=True,
              help="Where it will be sent: the signature covers this URL's path.")
@click.option("--method", default="POST", show_default=True, help="The HTTP method it will be sent with.")
@click.option("--timestamp", type=int, help="Unix seconds to sign with (default: now).")
def sign(body_text: str | None, url: str, method: str, timestamp: int | None) -> None:
    """Print the signature headers (and a ready curl line) for a webhook body."""
    import json
    import shlex
    import time
    from urllib.parse import urlsplit

    from telepay.security import signing

    settings = settings_or_exit()
    try:
        settings.require(("WEBHOOK_SIGNING_SECRET",))
    except ConfigError as error:
        fail_config(error)
    body = (body_text if body_text is not None else sys.stdin.read()).encode("utf-8")
    if method.upper() != "GET":
        try:
            json.loads(body)
        except ValueError:
            raise click.ClickException("the body is not valid JSON; the API would refuse it")
    path = urlsplit(url).path or "/"
    ts = int(time.time()) if timestamp is None else timestamp
    try:
        signature = signing.sign(settings.webhook_signing_secret.get_secret_value(), body, ts, method=method, path=path)
    except ValueError as error:
        raise click.ClickException(str(error))
    click.echo(f"{signing.TIMESTAMP_HEADER}: {ts}")
    click.echo(f"{signing.SIGNATURE_HEADER}: {signature}")
    click.echo("")
    data = f" -H 'Content-Type: application/json' --data-binary {shlex.quote(body.decode('utf-8'))}" if body else ""
    click.echo(
        f"curl -sS -X {method.upper()} {shlex.quote(url)} "
        f"-H '{signing.TIMESTAMP_HEADER}: {ts}' -H '{signing.SIGNATURE_HEADER}: {signature}'{data}"
    )


def _add_plugin_commands() -> None:
    """Commands other installed packages offer under `telepay` (the sandbox's `demo`).

    The product never imports them by name: they come from the `telepay.commands` entry points,
    so a production install without the sandbox simply has no `demo` command.
    """
    for entry in metadata.entry_points(group="telepay.commands"):
        try:
            command = entry.load()
        except ImportError as error:
            main.add_command(_unavailable(entry.name, error))
            continue
        main.add_command(command, entry.name)


def _unavailable(name: str, error: ImportError) -> click.Command:
    @click.command(name, help=f"(unavailable here: {error})")
    def command() -> None:
        click.echo(f"telepay: `{name}` needs the sandbox's requirements "
                   f"(pip install -r requirements-sandbox.txt): {error}", err=True)
        sys.exit(2)

    return command


main.add_command(payments)
main.add_command(alerts)
main.add_command(backup)
main.add_command(restore)
main.add_command(wallet)
main.add_command(payouts)
main.add_command(report)
main.add_command(stars)
main.add_command(subscribers)
main.add_command(texts)
_add_plugin_commands()
