"""Exception hierarchy shared by the core, the built-in plugins and third-party plugins.

Every error the library raises on purpose derives from :class:`InterplayError`.
:class:`InputError` and its subclasses mean *the user gave bad input* (a
pipeline, a parameter, a plugin name, a missing data file); the command-line
interface maps them to exit code 2 and prints the message without a traceback.
"""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "ConfigError",
    "DataNotFoundError",
    "DuplicatePluginError",
    "InputError",
    "InterplayError",
    "PluginDeclarationError",
    "PluginError",
    "ResolutionError",
    "UnknownPluginError",
]


class InterplayError(Exception):
    """Base class of every error raised on purpose by interplay."""


class InputError(InterplayError):
    """Bad input from the user (exit code 2 on the command line)."""


class ConfigError(InputError):
    """An invalid pipeline document or plugin parameter.

    Args:
        message: What is wrong.
        path: Dotted path of the offending field, e.g. ``attacks[0].params.eps``.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class UnknownPluginError(InputError, LookupError):
    """No plugin of that name (and kind) is registered."""


class DataNotFoundError(InputError, FileNotFoundError):
    """A data file a dataset needs is not under the data root.

    Args:
        filename: The file that is missing, relative to the data root.
        root: The data root that was searched.
        hint: Optional advice (how to obtain the file, which variable sets the root).
    """

    def __init__(self, filename: str, root: object, hint: str = "") -> None:
        self.filename = filename
        self.root = root
        message = f"data file {filename!r} not found under data root {str(root)!r}"
        if hint:
            message = f"{message}; {hint}"
        super().__init__(message)

    def __str__(self) -> str:  # FileNotFoundError would otherwise format errno fields
        return str(self.args[0])


class ArtifactError(InterplayError, ValueError):
    """An artifact has the wrong type, shape, dtype or content."""


class PluginError(InterplayError):
    """A plugin could not be imported or behaved against its declaration.

    Args:
        message: What went wrong.
        plugin: Name of the plugin, when known.
        distribution: Name of the distribution that ships it, when known.
    """

    def __init__(self, message: str, *, plugin: str | None = None, distribution: str | None = None) -> None:
        self.plugin = plugin
        self.distribution = distribution
        where = []
        if plugin:
            where.append(f"plugin {plugin!r}")
        if distribution:
            where.append(f"from distribution {distribution!r}")
        super().__init__(f"{' '.join(where)}: {message}" if where else message)


class PluginDeclarationError(PluginError, TypeError):
    """A module class or manifest declares invalid attributes or schemas."""


class DuplicatePluginError(PluginError):
    """Two distributions register a plugin under the same name."""


class ResolutionError(InputError):
    """A pipeline asks for a combination the declared types cannot satisfy."""
