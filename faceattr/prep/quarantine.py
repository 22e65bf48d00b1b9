"""Moving files to a quarantine folder at their relative paths: never overwriting, never deleting a file's only copy.

A file is moved by a hard link at its new place, made only if nothing is there (``link`` fails
on an existing name, so a file that appears meanwhile is never replaced), then the removal of
its old name. Across file systems, where no link can be made, it is copied to a file created
exclusively (``O_EXCL``), synced, and only then removed from its old place.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from faceattr.errors import DatasetError

#: ``link`` errors that mean "no hard link here" (another file system, or none supported), not a failure.
_NO_LINK = frozenset({errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK})


def plan_moves(folder: Path, quarantine: Path, paths: Sequence[Path]) -> list[Path]:
    """Where each of ``paths`` (files under ``folder``) goes in ``quarantine``: the same relative path.

    Args:
        folder: The folder the files are under.
        quarantine: The quarantine folder (it need not exist yet).
        paths: The files to move.

    Returns:
        One target per path, in order.

    Raises:
        DatasetError: If a target is already taken (by a file, folder or link); the message names
            the file and its taken place, and the first few others.

    >>> plan_moves(Path("photos"), Path("rejected"), [Path("photos/a/1.jpg")])
    [PosixPath('rejected/a/1.jpg')]
    """
    targets = [quarantine / path.relative_to(folder) for path in paths]
    taken = [(path, target) for path, target in zip(paths, targets) if os.path.lexists(target)]
    if taken:
        named = "; ".join(f"{target} is taken (would receive {path})" for path, target in taken[:3])
        more = f" and {len(taken) - 3} more" if len(taken) > 3 else ""
        raise DatasetError(f"{named}{more}: nothing was moved; empty the quarantine folder or choose another",
                           quarantine)
    return targets


def move_file(source: Path, target: Path) -> None:
    """Moves ``source`` to ``target``, never replacing an existing ``target`` and never losing the file.

    A link is moved as the link itself on one file system; across file systems the file it
    points to is copied (the link's target stays where it is).

    Raises:
        OSError: If ``target`` exists or cannot be written; the message names both paths, and
            ``source`` is left where it was.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target, follow_symlinks=False)
        except OSError as error:
            if error.errno not in _NO_LINK:
                raise
            _copy_exclusive(source, target)
        os.unlink(source)
    except OSError as error:
        raise OSError(error.errno, f"cannot move {source} to {target}: {error.strerror or error}") from error


def _copy_exclusive(source: Path, target: Path) -> None:
    """Copies ``source`` to a new ``target`` (created here or not at all), synced; removed again if the copy fails."""
    with open(source, "rb") as original, open(target, "xb") as copy:
        try:
            shutil.copyfileobj(original, copy)
            copy.flush()
            os.fsync(copy.fileno())
        except BaseException:
            target.unlink(missing_ok=True)
            raise
    shutil.copystat(source, target)
