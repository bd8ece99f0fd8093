"""Which database, and its password kept out of every file: a URL is shown masked, and a
password given on the command line is moved into this process's environment before Hydra
writes the overrides anywhere."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from sweeper.history.settings import DEFAULT_URL, URL_ENV

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

# A password taken off the command line: kept in this process only (not in its
# environment, which every job inherits).
_given_password: str | None = None
_URL_OVERRIDE = re.compile(r"^(\+{0,2}history\.url=)(.*)$", re.S)


class HistoryUrlError(ValueError):
    pass


def chosen_url(cli: str | None = None, configured: str | None = None) -> str:
    """--db, else the config's history.url, else $SWEEPER_HISTORY_URL, else the default."""
    return cli or configured or os.environ.get(URL_ENV) or DEFAULT_URL


def _make_url(text: str) -> URL | None:
    """SQLAlchemy's reading of a URL; None where the text is not one. SQLAlchemy is
    imported here, when a URL is read: its import is an eighth of a sweep's start-up, and
    a sweep reads one only after its jobs (or where history.url= is given)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(text)
    except ArgumentError:
        return None


def parse(url: str) -> URL:
    parsed = _make_url(url)
    if parsed is None:
        raise HistoryUrlError(
            f"history URL {mask(url)!r} is not a database URL: give e.g. "
            f"{DEFAULT_URL} or postgresql+psycopg://user@host/db"
        ) from None
    if parsed.drivername == "postgresql":  # psycopg 3, which the postgres extra installs
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.password is None and _given_password:
        parsed = parsed.set(password=_given_password)
    return parsed


def mask(url: str) -> str:
    """The URL as it may be printed or written: any password as ***."""
    parsed = _make_url(url)
    if parsed is None:
        return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)
    return parsed.render_as_string(hide_password=True)


def has_password(url: str | None) -> bool:
    if not url:
        return False
    parsed = _make_url(url)
    if parsed is None:
        return bool(re.search(r"//[^:/@]*:[^@]*@", url))
    return parsed.password is not None


def without_password(url: URL) -> URL:
    from sqlalchemy.engine import URL

    # URL.set(password=None) leaves the password as it is: build the URL again without it.
    return URL.create(
        url.drivername, url.username, None, url.host, url.port, url.database, url.query
    )


def redact(text: str) -> str:
    """A message with any password this process knows of replaced by ***."""
    for secret in (_given_password, _env_password()):
        if secret:
            text = text.replace(secret, "***")
    return text


def given_password() -> str | None:
    """The password taken off the command line, if any (for a detached driver's
    environment: never written to a file)."""
    return _given_password


def _env_password() -> str | None:
    parsed = _make_url(os.environ.get(URL_ENV, ""))
    return None if parsed is None else parsed.password


def password_out_of_argv(args: list[str]) -> list[str]:
    """`history.url=...://user:secret@host/db` becomes `...://user@host/db` before Hydra
    sees it (and writes the overrides into .hydra/ and multirun.yaml); the secret is kept
    in this process for parse() to put back."""
    global _given_password
    out = []
    for arg in args:
        match = _URL_OVERRIDE.match(arg)
        if match and has_password(match.group(2)):
            url = _make_url(match.group(2))
            assert url is not None  # has_password read it
            _given_password = str(url.password)
            arg = match.group(1) + without_password(url).render_as_string(hide_password=False)
        out.append(arg)
    return out
