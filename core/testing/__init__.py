"""The conformance kit: check a plugin the way scikit-learn's ``check_estimator`` checks an estimator.

From Python::

    from interplay.testing import check_plugin
    report = check_plugin("pgd")
    assert report.passed, report.format()

From pytest (one test per plugin and check)::

    from interplay.testing import parametrize_with_checks

    @parametrize_with_checks([MyAttack, "my_metric"])
    def test_conformance(plugin, check):
        check(plugin)

From the command line: ``interplay check-plugin NAME``.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import InterplayError

if TYPE_CHECKING:
    from ..modules import Module
    from .checks import Check

__all__ = [
    "CheckReport",
    "CheckResult",
    "TinyMLP",
    "check_plugin",
    "example_artifact",
    "iter_checks",
    "parametrize_with_checks",
    "resolve_plugin",
    "synthetic_task",
    "tiny_context",
    "tiny_model",
]


def __getattr__(name: str) -> Any:  # the synthetic helpers import torch: load them on first use
    if name in ("TinyMLP", "example_artifact", "synthetic_task", "tiny_context", "tiny_model"):
        from . import synthetic

        return getattr(synthetic, name)
    raise AttributeError(f"module 'interplay.testing' has no attribute {name!r}")


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check on one plugin."""

    check: str
    passed: bool
    message: str = ""


@dataclass
class CheckReport:
    """All check outcomes for one plugin."""

    plugin: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Whether every check passed."""
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[CheckResult]:
        """The failed checks."""
        return [r for r in self.results if not r.passed]

    def format(self) -> str:
        """A human-readable report, one line per check and the reason of each failure."""
        lines = [f"conformance of {self.plugin!r}: {sum(r.passed for r in self.results)}/{len(self.results)} passed"]
        for result in self.results:
            lines.append(f"  {'PASS' if result.passed else 'FAIL'}  {result.check}")
            if not result.passed:
                lines.extend(f"        {line}" for line in result.message.splitlines())
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "plugin": self.plugin,
            "passed": self.passed,
            "results": [{"check": r.check, "passed": r.passed, "message": r.message} for r in self.results],
        }


def resolve_plugin(plugin: str | type[Module]) -> type[Module]:
    """A plugin class from a registered name or the class itself."""
    if isinstance(plugin, str):
        from ..registry import get_registry

        return get_registry().load(plugin)
    return plugin


def iter_checks(plugin: str | type[Module]) -> Iterator[tuple[type[Module], Check]]:
    """Pairs of (plugin class, check) for every check that applies."""
    from .checks import checks_for

    cls = resolve_plugin(plugin)
    for check in checks_for(cls):
        yield cls, check


def check_plugin(plugin: str | type[Module]) -> CheckReport:
    """Run every applicable check on ``plugin`` and collect the outcomes (never raises for a failing check)."""
    cls = resolve_plugin(plugin)
    report = CheckReport(plugin=cls.name)
    for _, check in iter_checks(cls):
        try:
            check(cls)
        except AssertionError as exc:
            report.results.append(CheckResult(check.__name__, False, str(exc) or "assertion failed"))
        except InterplayError as exc:
            report.results.append(CheckResult(check.__name__, False, f"{type(exc).__name__}: {exc}"))
        except Exception as exc:  # a crash inside the plugin is a failed check, with its traceback
            tb = "".join(traceback.format_exception(exc, limit=-3))
            report.results.append(CheckResult(check.__name__, False, f"{type(exc).__name__}: {exc}\n{tb}"))
        else:
            report.results.append(CheckResult(check.__name__, True))
    return report


def parametrize_with_checks(plugins: Iterable[str | type[Module]]) -> Any:
    """A ``pytest.mark.parametrize`` over (plugin, check) pairs, with readable test ids.

    Args:
        plugins: Plugin classes or registered names.

    Returns:
        A decorator for a test taking ``plugin`` and ``check`` and calling ``check(plugin)``.
    """
    import pytest

    pairs = [pair for plugin in plugins for pair in iter_checks(plugin)]
    ids = [f"{cls.name}-{check.__name__}" for cls, check in pairs]
    return pytest.mark.parametrize(("plugin", "check"), pairs, ids=ids)
