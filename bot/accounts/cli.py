"""``belofte users``: add, list, disable and enable users, and set passwords.

Passwords are never command-line options (they would end up in shell history and ``ps``): they
are prompted for twice, hidden, or read from standard input with ``--password-stdin``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated, NoReturn

import typer
from sqlalchemy.orm import Session

from bot.accounts import service
from bot.accounts.model import LANGUAGES, ROLES
from bot.settings import get_settings

app = typer.Typer(
    help="Accounts of the web pages: agents, supervisors, CX team, admins.", no_args_is_help=True
)

UsernameArg = Annotated[str, typer.Argument(help="Login name (case-insensitive).")]
PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password from the first line of standard input (for scripts).",
    ),
]


def _password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        # Only the line end is dropped: the password itself may contain any character.
        return line.removesuffix("\n").removesuffix("\r")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


def _sessions() -> Callable[[], Session]:
    from bot.storage.db import get_sessionmaker
    from bot.storage.migrate import upgrade_database

    settings = get_settings()
    # Like `demo seed`: a fresh installation gets its tables before the first user.
    upgrade_database(settings.sqlalchemy_url)
    return get_sessionmaker(settings)


def _fail(error: service.AccountError) -> NoReturn:
    typer.echo(f"Error: {error}", err=True)
    raise typer.Exit(1) from error


@app.command("add")
def add(
    username: UsernameArg,
    role: Annotated[str, typer.Option(help=f"One of {', '.join(ROLES)}.")],
    name: Annotated[str | None, typer.Option(help="Display name (default: the username).")] = None,
    language: Annotated[
        str, typer.Option(help=f"Interface language: {' or '.join(LANGUAGES)}.")
    ] = "nl",
    password_stdin: PasswordStdin = False,
) -> None:
    """Add a user; the password is asked for (hidden, twice) or read with --password-stdin."""
    settings = get_settings()
    password = _password(password_stdin)
    with _sessions()() as db:
        try:
            user = service.create_user(
                db,
                username=username,
                password=password,
                role=role,
                display_name=name,
                language=language,
                settings=settings,
            )
        except service.AccountError as error:
            _fail(error)
    typer.echo(f"Added {user.username} ({user.role}).")


@app.command("list")
def list_() -> None:
    """List the users: username, role, language, active or disabled, last login."""
    with _sessions()() as db:
        users = service.list_users(db)
    if not users:
        typer.echo("No users yet: add one with `belofte users add`.")
        return
    for user in users:
        state = "active" if user.is_active else "disabled"
        last = user.last_login_at.isoformat(timespec="minutes") if user.last_login_at else "-"
        typer.echo(
            f"{user.username}\t{user.role}\t{user.language}\t{state}\t{last}\t{user.display_name}"
        )


@app.command("disable")
def disable(username: UsernameArg) -> None:
    """Disable a user: they cannot log in, and their open sessions end at once."""
    _set_active(username, False)
    typer.echo(f"Disabled {service.normalise_username(username)}; their sessions have ended.")


@app.command("enable")
def enable(username: UsernameArg) -> None:
    """Enable a disabled user again."""
    _set_active(username, True)
    typer.echo(f"Enabled {service.normalise_username(username)}.")


def _set_active(username: str, active: bool) -> None:
    with _sessions()() as db:
        try:
            service.set_active(db, username, active)
        except service.AccountError as error:
            _fail(error)


@app.command("set-password")
def set_password(username: UsernameArg, password_stdin: PasswordStdin = False) -> None:
    """Give a user a new password (asked for, or --password-stdin); their sessions end."""
    settings = get_settings()
    password = _password(password_stdin)
    with _sessions()() as db:
        try:
            service.set_password(db, username, password, settings)
        except service.AccountError as error:
            _fail(error)
    typer.echo(f"Password of {service.normalise_username(username)} changed; sessions ended.")
