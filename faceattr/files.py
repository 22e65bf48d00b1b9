"""Writing output files safely: created exclusively under a random name, never through a link, then put in place.

An output folder may hold a symbolic link planted where an output will go (``out/a.jpg`` ->
``~/.bashrc``); opening the destination for writing would follow it and overwrite the victim.
:func:`write_exclusive` never opens the destination: it creates a new file under a random
temporary name (``O_CREAT | O_EXCL | O_NOFOLLOW``: an existing file or link there is an error,
not a target) and renames it over the destination, which replaces a link itself, not what it
points to. :func:`fit_name` shortens names the file system would refuse as too long.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

#: The longest file name, in bytes, that common file systems accept (ext4, XFS, btrfs, APFS, NTFS).
NAME_MAX = 255

_EXCLUSIVE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_BINARY = getattr(os, "O_BINARY", 0)  # Windows only: no newline translation


def write_exclusive(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Calls ``write(file)`` on a new file that then replaces ``path``, never writing through a link.

    The new file is created in ``path``'s folder (which must exist) under a random name short
    enough for any destination name, synced to disk and renamed onto ``path``: a link planted at
    ``path`` is replaced, its target left intact; an interrupted or failed write leaves any
    previous ``path`` intact and no temporary file.

    Args:
        path: The destination.
        write: Writes the content to the binary file it is given.

    Raises:
        OSError: The folder is missing or not writable, or ``path`` is a folder.

    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.bin")
    >>> write_exclusive(path, lambda file: file.write(b"ok"))
    >>> open(path, "rb").read()
    b'ok'
    """
    path = Path(path)
    temporary = path.with_name(f".faceattr-{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, _EXCLUSIVE | _BINARY, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


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
