"""`telepay backup PATH` and `telepay restore PATH`: an online pg_dump of the whole database (custom
format) and its restore, with the PostgreSQL 16 client tools that ship in the pgserver wheel,
for the embedded database and any server reachable by DATABASE_URL.

Cloud SQL is backed up by Cloud SQL itself (automated and on-demand backups); through the Cloud
SQL Auth Proxy, DATABASE_URL pointing at the proxy works here too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
from sqlalchemy.engine import make_url

from telepay.cli.common import settings_or_exit


def _tool(name: str) -> str:
    import pgserver  # the wheel's own bin/ has pg_dump and pg_restore matching its server

    path = Path(pgserver.__file__).parent / "pginstall" / "bin" / name
    if not path.exists():
        raise click.ClickException(f"{name} not found at {path}")
    return str(path)


def _conninfo(settings) -> tuple[list[str], dict[str, str]]:
    """pg_dump/pg_restore connection arguments and environment (the password never on argv)."""
    from telepay.models.engine import embedded_url, normalise_url

    if settings.cloud_sql_connection_name:
        raise click.ClickException("Cloud SQL: use Cloud SQL's backups (gcloud sql backups create), or point "
                                   "DATABASE_URL at the Cloud SQL Auth Proxy and run this again")
    url = make_url(normalise_url(settings.database_url.get_secret_value()) if settings.database_url
                   else embedded_url(settings.data_dir))
    sock = url.query.get("unix_sock")
    socket = sock if isinstance(sock, str) or sock is None else sock[0]  # a query value may repeat
    host = str(Path(socket).parent) if socket else (url.host or "localhost")
    port = socket.rsplit(".", 1)[-1] if socket else str(url.port or 5432)
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = url.password
    return ["--host", host, "--port", port, "--username", url.username or "postgres",
            "--dbname", url.database or "postgres"], env


def _run(command: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        click.echo(result.stderr, err=True)
        sys.exit(1)


@click.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def backup(path: Path) -> None:
    """Write an online backup of the database to PATH (pg_dump custom format)."""
    args, env = _conninfo(settings_or_exit())
    _run([_tool("pg_dump"), "--format=custom", "--no-owner", "--file", str(path), *args], env)
    click.echo(f"backup written to {path} ({path.stat().st_size} bytes)")


@click.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--yes", is_flag=True, help="Replace what the database holds now without asking.")
def restore(path: Path, yes: bool) -> None:
    """Restore PATH (from `telepay backup`) into the configured database, replacing its contents.

    Run it with the service stopped; then `telepay payouts reconcile` before payouts resume.
    """
    args, env = _conninfo(settings_or_exit())
    if not yes:
        click.confirm("This replaces every table in the configured database. Go on?", abort=True)
    _run([_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--single-transaction",
          "--exit-on-error", *args, str(path)], env)
    click.echo(f"restored {path}")
