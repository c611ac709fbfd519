"""Shared fixtures of interplay's test suite.

* torch runs single-threaded (see ``_single_torch_thread``).
* ``INTERPLAY_DATA`` points at ``<repo>/../shared/data`` when that exists and the variable is unset,
  so the file-backed built-in datasets (census, fmnist) find their files without a download.
* :func:`use_registry` swaps the process-wide plugin registry for a test and restores it afterwards.
* :func:`make_distribution` writes a real (unpacked) distribution with a ``.dist-info`` folder, which
  ``importlib.metadata`` discovers once its directory is on ``sys.path`` / ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

if SHARED_DATA.is_dir() and not os.environ.get("INTERPLAY_DATA"):
    os.environ["INTERPLAY_DATA"] = str(SHARED_DATA)


@pytest.fixture(scope="session", autouse=True)
def _single_torch_thread() -> Iterator[None]:
    """Run torch single-threaded: the suite trains many tiny models, for which intra-op threads only add
    synchronisation (on a busy 2-core machine a 3-epoch TinyMLP takes ~0.4 s with 2 threads, ~0.01 s with 1).
    Set ``INTERPLAY_TEST_TORCH_THREADS`` to choose another count."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("INTERPLAY_TEST_TORCH_THREADS", "1")))
    yield
    torch.set_num_threads(previous)


def make_distribution(
    site: Path,
    dist_name: str,
    files: Mapping[str, str],
    entry_points: Mapping[str, str],
    *,
    version: str = "0.0.1",
) -> Path:
    """Write an installed-looking distribution under ``site``.

    Args:
        site: A directory that will be put on ``sys.path`` (or ``PYTHONPATH``).
        dist_name: The distribution's name, e.g. ``broken-plugin``.
        files: Source files by path relative to ``site`` (``pkg/__init__.py``, ...); dedented.
        entry_points: ``interplay`` entry points, name -> object reference.
        version: The distribution's version.

    Returns:
        The ``.dist-info`` directory.
    """
    for relative, text in files.items():
        path = site / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    dist_info = site / f"{dist_name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir(parents=True, exist_ok=True)
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: {version}\n", encoding="utf-8"
    )
    lines = ["[interplay]", *(f"{name} = {ref}" for name, ref in entry_points.items()), ""]
    (dist_info / "entry_points.txt").write_text("\n".join(lines), encoding="utf-8")
    return dist_info


def run_interplay(*args: str, pythonpath: Path | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run ``python -m interplay ARGS`` in a subprocess (cwd: the repository root)."""
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(pythonpath), env.get("PYTHONPATH", "")) if p)
    return subprocess.run(
        [sys.executable, "-m", "interplay", *args],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=timeout, check=False,
    )


def run_python(code: str, *, pythonpath: Path | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run a Python snippet in a fresh interpreter (cwd: the repository root)."""
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(pythonpath), env.get("PYTHONPATH", "")) if p)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=timeout, check=False,
    )


@pytest.fixture
def use_registry() -> Iterator[Callable[[Any], Any]]:
    """Install a registry as the process-wide one for the test; the previous one is restored after."""
    from interplay.registry import get_registry, reset_registry

    previous = get_registry()

    def install(registry: Any) -> Any:
        reset_registry(registry)
        return registry

    yield install
    reset_registry(previous)


@pytest.fixture
def toy_reg(use_registry: Callable[[Any], Any]) -> Any:
    """A fresh registry with the built-ins and the toy plugins, installed as the process-wide one."""
    from toy_plugins import toy_registry

    return use_registry(toy_registry())


@pytest.fixture(scope="session")
def tabular_task() -> Any:
    """A tiny partitioned tabular task (120 train / 60 test rows, 10 features, 3 classes)."""
    from interplay.testing.synthetic import synthetic_task

    return synthetic_task("tabular")


@pytest.fixture(scope="session")
def tiny_trained(tabular_task: Any) -> Any:
    """A TinyMLP trained for 3 epochs on ``tabular_task``'s defender rows."""
    from interplay.testing.synthetic import tiny_context, tiny_model

    return tiny_model(tabular_task, tiny_context())


@pytest.fixture(scope="session")
def digits_task() -> Any:
    """scikit-learn's digits through the built-in ``digits`` dataset plugin."""
    import interplay

    return interplay.get_registry().create("digits").load()


# Third-party distributions written to a temporary site directory (see ``third_party_site``).
_DUPLICATE_MANIFEST = """
    from interplay.registry import PluginSpec, hookimpl

    @hookimpl
    def interplay_plugins():
        return [PluginSpec(name="dup_metric", kind="metric", target="{package}.impl:DupMetric", risks=("S1",),
                           input="AdversarialExamples", higher_is_riskier=True)]
"""

THIRD_PARTY: dict[str, dict[str, Any]] = {
    # (a) a manifest that cannot be imported
    "broken-plugin": {
        "entry_points": {"broken": "broken_plugin.manifest"},
        "files": {
            "broken_plugin/__init__.py": "",
            "broken_plugin/manifest.py": 'raise ImportError("simulated: needs the missing package quux_missing")\n',
        },
    },
    # (b) a manifest with invalid declarations next to valid ones
    "badschema-plugin": {
        "entry_points": {"badschema": "badschema_plugin.manifest"},
        "files": {
            "badschema_plugin/__init__.py": "",
            "badschema_plugin/manifest.py": """
                from interplay.registry import hookimpl

                @hookimpl
                def interplay_plugins():
                    return [
                        {"name": "typo_kind", "kind": "attak", "target": "badschema_plugin.impl_ok:OkMetric"},
                        {"name": "bad_input", "kind": "attack", "target": "badschema_plugin.impl_ok:OkMetric",
                         "risks": ["S1"], "input": "NotAnArtifact", "output": "AdversarialExamples",
                         "access": "white-box"},
                        {"name": "unknown_risk", "kind": "metric", "target": "badschema_plugin.impl_ok:OkMetric",
                         "risks": ["Z9"], "input": "AdversarialExamples", "higher_is_riskier": True},
                        {"name": "lazy_bad_attack", "kind": "attack", "target": "badschema_plugin.impl_bad:BadAccess",
                         "risks": ["S1"], "input": "TrainedModel", "output": "AdversarialExamples",
                         "access": "white-box"},
                        {"name": "schema_ok_metric", "kind": "metric", "target": "badschema_plugin.impl_ok:OkMetric",
                         "risks": ["S1"], "input": "AdversarialExamples", "higher_is_riskier": True},
                    ]
            """,
            "badschema_plugin/impl_ok.py": """
                from interplay import Metric, MetricValue
                from interplay.artifacts import AdversarialExamples

                class OkMetric(Metric):
                    '''Share of adversarial examples predicted as their label.'''

                    name = "schema_ok_metric"
                    risks = ("S1",)
                    Input = AdversarialExamples
                    higher_is_riskier = True

                    def compute(self, output, /, **_):
                        value = float((output.predictions == output.y).float().mean())
                        return MetricValue(name=self.name, value=value, higher_is_riskier=True)
            """,
            # importing this module raises PluginDeclarationError: access disagrees with Input
            "badschema_plugin/impl_bad.py": """
                from interplay import Attack
                from interplay.artifacts import AdversarialExamples, TrainedModel

                class BadAccess(Attack):
                    name = "lazy_bad_attack"
                    risks = ("S1",)
                    Input = TrainedModel
                    Output = AdversarialExamples
                    access = "black-box"

                    def run(self, target, /, *, data=None, context=None):
                        raise AssertionError("never runs")
            """,
        },
    },
    # (c) a new risk id and plugins that use it
    "newrisk-plugin": {
        "entry_points": {"newrisk": "newrisk_plugin.manifest"},
        "files": {
            "newrisk_plugin/__init__.py": "",
            "newrisk_plugin/manifest.py": """
                from interplay.registry import PluginSpec, RiskSpec, hookimpl

                @hookimpl
                def interplay_risks():
                    return [RiskSpec(id="X1", name="confidence leakage", family="privacy",
                                     description="A made-up risk declared by a third party.")]

                @hookimpl
                def interplay_plugins():
                    return [
                        PluginSpec(name="x1_attack", kind="attack", target="newrisk_plugin.attack:X1Attack",
                                   risks=("X1",), input="QueryAccess", output="MembershipScores",
                                   access="black-box", knowledge="none"),
                        PluginSpec(name="x1_metric", kind="metric", target="newrisk_plugin.attack:X1Metric",
                                   risks=("X1",), input="MembershipScores", higher_is_riskier=True),
                    ]
            """,
            "newrisk_plugin/attack.py": """
                import torch

                from interplay import Attack, Metric, MetricValue
                from interplay.artifacts import MembershipScores, QueryAccess

                class X1Attack(Attack):
                    '''Scores each train and test row by the target's top posterior.'''

                    name = "x1_attack"
                    risks = ("X1",)
                    Input = QueryAccess
                    Output = MembershipScores
                    access = "black-box"

                    def run(self, target, /, *, data=None, context=None):
                        x = torch.cat([data.train.x, data.test.x])
                        member = torch.cat([torch.ones(len(data.train)), torch.zeros(len(data.test))])
                        return MembershipScores(scores=target.query(x).max(dim=1).values, is_member=member)

                class X1Metric(Metric):
                    '''Mean score of members minus mean score of non-members.'''

                    name = "x1_metric"
                    risks = ("X1",)
                    Input = MembershipScores
                    higher_is_riskier = True

                    def compute(self, output, /, **_):
                        gap = output.scores[output.is_member].mean() - output.scores[~output.is_member].mean()
                        return MetricValue(name=self.name, value=float(gap), higher_is_riskier=True, risk="X1")
            """,
        },
    },
    # (d) two distributions claiming one plugin name
    "dup-plugin-a": {
        "entry_points": {"dup": "dup_a.manifest"},
        "files": {"dup_a/__init__.py": "", "dup_a/manifest.py": _DUPLICATE_MANIFEST.format(package="dup_a")},
    },
    "dup-plugin-b": {
        "entry_points": {"dup": "dup_b.manifest"},
        "files": {"dup_b/__init__.py": "", "dup_b/manifest.py": _DUPLICATE_MANIFEST.format(package="dup_b")},
    },
}


@pytest.fixture(scope="session")
def third_party_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the distributions of :data:`THIRD_PARTY`; put it on ``sys.path`` or ``PYTHONPATH``."""
    site = tmp_path_factory.mktemp("site-packages")
    for dist_name, spec in THIRD_PARTY.items():
        make_distribution(site, dist_name, spec["files"], spec["entry_points"])
    return site


@pytest.fixture
def third_party_registry(third_party_site: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A registry discovered in-process with :func:`third_party_site` on ``sys.path``."""
    from interplay.registry import Registry

    monkeypatch.syspath_prepend(str(third_party_site))
    return Registry.discover()
