"""Where the built-in datasets look for their files.

The data root is chosen, in order of precedence, from an explicit ``root``
argument, the ``INTERPLAY_DATA`` environment variable, or a per-user cache
directory (``$XDG_CACHE_HOME/interplay``, falling back to ``~/.cache/interplay``).
Dataset loaders never download anything implicitly: a missing file raises
:class:`~interplay.errors.DataNotFoundError` that says where it was looked for.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import DataNotFoundError

__all__ = ["DATA_ENV_VAR", "default_cache_dir", "require_file", "resolve_data_root"]

#: Environment variable that overrides the default data root.
DATA_ENV_VAR = "INTERPLAY_DATA"

_ROOT_ADVICE = (
    f"set the {DATA_ENV_VAR} environment variable or pass the `root` parameter "
    "to point at the directory that holds the dataset folders"
)


def default_cache_dir() -> Path:
    """Return the per-user cache directory used when no data root is configured.

    Follows the XDG base-directory convention: ``$XDG_CACHE_HOME/interplay`` when
    ``XDG_CACHE_HOME`` is set to an absolute path, else ``~/.cache/interplay``.

    Returns:
        The cache directory (it is not created).
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says relative values are invalid and must be ignored.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "interplay"
    return Path.home() / ".cache" / "interplay"


def resolve_data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the directory under which dataset files are looked for.

    Args:
        root: An explicit data root. When given (not ``None``), it wins over
            everything else.

    Returns:
        ``root`` if given; else the value of ``INTERPLAY_DATA`` if it is set and
        non-empty; else :func:`default_cache_dir`. A leading ``~`` is expanded.
        The directory is neither created nor required to exist.
    """
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(DATA_ENV_VAR, "")
    if env:
        return Path(env).expanduser()
    return default_cache_dir()


def require_file(root: Path, relative: str, *, hint: str = "") -> Path:
    """Return ``root / relative`` if it is an existing file, else raise.

    Args:
        root: The data root (see :func:`resolve_data_root`).
        relative: Path of the file relative to ``root``, e.g. ``"adult/adult.data"``.
        hint: Dataset-specific advice (e.g. where to obtain the file); it is put
            before the standard advice on how to choose the data root.

    Returns:
        The full path of the file.

    Raises:
        DataNotFoundError: If the file does not exist. The message names
            ``relative`` and ``root`` and mentions ``INTERPLAY_DATA`` and the
            ``root`` parameter.
    """
    path = Path(root) / relative
    if not path.is_file():
        advice = f"{hint}; {_ROOT_ADVICE}" if hint else _ROOT_ADVICE
        raise DataNotFoundError(relative, root, advice)
    return path
