"""Writing files safely: exclusive, non-following temporary files put in place whole, their clean-up, and names
the file system accepts.

Every file faceattr writes goes first to a temporary file with a random name in the destination's
folder, created with ``O_CREAT | O_EXCL | O_NOFOLLOW``: it cannot exist before (so a symlink or
file planted under that name is never followed or overwritten), and an interrupted write leaves
the previous destination intact. ``os.replace`` then puts it in place; it replaces a symlink at
the destination itself, never the file the link points to. A write killed with SIGKILL leaves
its temporary file behind; :func:`remove_stale_temporaries` removes those of a folder.
:func:`fit_name` shortens names the file system would refuse as too long.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger(__name__)

#: The longest file name, in bytes, that common file systems accept (ext4, XFS, btrfs, APFS, NTFS).
NAME_MAX = 255

#: Bytes a temporary name adds to its destination's: ``.`` + ``.HEX8.tmp``.
_TEMPORARY_EXTRA = 14

#: The names :func:`temporary_name` gives, with the destination's name as ``name``.
_TEMPORARY_NAME = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{8}\.tmp", re.DOTALL)

#: Flags of a temporary file's open: created here or not at all, never through a symlink.
_EXCLUSIVE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def temporary_name(name: str) -> str:
    """A random temporary file name for the destination file name ``name``: ``.NAME.HEX8.tmp``
    (``NAME`` shortened by :func:`fit_name` where the whole would be too long for the file system).

    >>> bool(re.fullmatch(r"\\.last\\.pt\\.[0-9a-f]{8}\\.tmp", temporary_name("last.pt")))
    True
    >>> len(temporary_name("a" * 255)) == NAME_MAX
    True
    """
    return f".{fit_name(name, NAME_MAX - _TEMPORARY_EXTRA)}.{secrets.token_hex(4)}.tmp"


@contextlib.contextmanager
def _exclusive_temporary(path: Path) -> Iterator[tuple[Path, IO[bytes]]]:
    """A new temporary file beside ``path`` (:func:`temporary_name`), created here or not at all and
    never through a symlink; synced when the block ends, removed if it fails."""
    temporary = path.with_name(temporary_name(path.name))
    descriptor = os.open(temporary, _EXCLUSIVE_FLAGS, 0o644)
    try:
        with os.fdopen(descriptor, "wb") as file:
            yield temporary, file
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_temporary(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Calls ``write(file)`` on a new, exclusively created temporary file beside ``path``; returns it.

    The file is opened with ``O_CREAT | O_EXCL | O_NOFOLLOW`` (mode 0o644 less the umask) and
    synced to disk. The caller moves it onto ``path`` with ``os.replace`` (atomic within one
    folder) or deletes it; if ``write`` fails, the temporary file is removed.

    Args:
        path: The destination; its folder must exist.
        write: Writes the content to the binary file it is given.

    Returns:
        The temporary file (``.NAME.HEX8.tmp`` in ``path``'s folder).

    >>> import tempfile
    >>> temporary = write_temporary(Path(tempfile.mkdtemp()) / "a.bin", lambda file: file.write(b"ok"))
    >>> temporary.name.startswith(".a.bin."), temporary.read_bytes()
    (True, b'ok')
    """
    with _exclusive_temporary(Path(path)) as (temporary, file):
        write(file)
    return temporary


@contextlib.contextmanager
def open_exclusive(path: str | Path) -> Iterator[IO[bytes]]:
    """A binary file to write ``path`` through, put in place whole when the block ends.

    What is written goes to an exclusive temporary file (see :func:`write_temporary`) that
    replaces ``path`` with ``os.replace`` when the block ends without error: a symlink planted at
    ``path`` is replaced itself, its target untouched. If the block fails, the temporary file is
    removed and any previous ``path`` is left as it was. For outputs written piece by piece
    (a CSV growing row by row); :func:`write_exclusive` writes one in a call.

    Args:
        path: The destination; its folder must exist.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "rows.csv"
    >>> with open_exclusive(path) as file:
    ...     _ = file.write(b"a,b\\n")
    >>> path.read_bytes()
    b'a,b\\n'
    """
    path = Path(path)
    with _exclusive_temporary(path) as (temporary, file):
        yield file
    try:
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_exclusive(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Writes ``path`` whole through an exclusive temporary file, never following a symlink.

    ``write(file)`` fills a new temporary file in ``path``'s folder (see :func:`write_temporary`),
    which then replaces ``path`` with ``os.replace``: a symlink planted at ``path`` is replaced
    itself, its target untouched; an interrupted write leaves any previous ``path`` intact.

    Args:
        path: The destination; its folder must exist.
        write: Writes the content to the binary file it is given.

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "a.bin"
    >>> write_exclusive(path, lambda file: file.write(b"ok"))
    >>> path.read_bytes()
    b'ok'
    """
    with open_exclusive(path) as file:
        write(file)


def save_table(out: str | Path, name: str, table: str, record: Any) -> tuple[Path, Path]:
    """Writes a measurement as ``OUT/NAME.md`` (its Markdown table) and ``OUT/NAME.json`` (its figures).

    Each file is written whole (:func:`write_exclusive`); ``out`` is created if needed. Every
    benchmark and measurement tool saves its table this way.

    Args:
        out: The folder.
        name: The files' name without suffix.
        table: The Markdown text.
        record: JSON-serialisable figures.

    Returns:
        The Markdown and JSON files.

    >>> import tempfile
    >>> markdown, figures = save_table(tempfile.mkdtemp(), "speed", "| a |\\n", {"a": 1})
    >>> markdown.name, figures.read_text()
    ('speed.md', '{\\n  "a": 1\\n}\\n')
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = out / f"{name}.md", out / f"{name}.json"
    for path, text in zip(paths, (table, json.dumps(record, indent=2) + "\n")):
        write_exclusive(path, lambda file, text=text: file.write(text.encode("utf-8")))
    return paths


def remove_stale_temporaries(folder: str | Path, names: Iterable[str]) -> list[Path]:
    """Removes the temporary files that writes of ``names`` in ``folder`` left behind; returns them.

    Only files directly in ``folder`` whose names match :func:`temporary_name` for one of
    ``names`` are removed (each is logged): call it only when no write to them can be under way.

    Args:
        folder: The folder (a missing folder has none).
        names: Destination file names, e.g. ``["last.pt", "best.pt"]``.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> (folder / ".last.pt.0123abcd.tmp").touch(); (folder / "notes.tmp").touch()
    >>> [path.name for path in remove_stale_temporaries(folder, ["last.pt"])]
    ['.last.pt.0123abcd.tmp']
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    names = {fit_name(name, NAME_MAX - _TEMPORARY_EXTRA) for name in names}
    removed = []
    for path in sorted(folder.iterdir()):
        match = _TEMPORARY_NAME.fullmatch(path.name)
        if match and match["name"] in names and not path.is_dir():
            path.unlink(missing_ok=True)
            logger.info("removed %s, left by an interrupted write", path)
            removed.append(path)
    return removed


def fit_name(name: str, limit: int = NAME_MAX) -> str:
    """``name`` if it fits in ``limit`` bytes, else its stem cut with a hash of the whole name added.

    Lengths are counted as the file system counts them (``os.fsencode``: UTF-8, undecodable
    bytes kept as they were). The shortened name is the same on every run and keeps the
    extension; two long names that differ anywhere get different hashes, so they stay apart.

    Args:
        name: A file name (no folder).
        limit: The most bytes the name may have.

    Returns:
        The name, shortened if needed.

    >>> fit_name("photo.jpg")
    'photo.jpg'
    >>> short = fit_name("a" * 300 + ".jpg")
    >>> len(short), short[-13:]
    (255, '~3d87a649.jpg')
    """
    if len(os.fsencode(name)) <= limit:
        return name
    stem, dot, suffix = name.rpartition(".")
    if not stem:  # no extension
        stem, dot, suffix = name, "", ""
    tag = "~" + hashlib.sha256(os.fsencode(name)).hexdigest()[:8] + dot + suffix
    while stem and len(os.fsencode(stem + tag)) > limit:
        stem = stem[:-1]
    return stem + tag
