"""The wheel contains every package: each directory of core/ and plugins/ is declared in pyproject.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_package_directory_is_declared() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    declared = set(config["packages"])
    roots = {"interplay": REPO / "core", "interplay.plugins": REPO / "plugins"}
    assert config["package-dir"] == {name: path.name for name, path in roots.items()}
    found = set()
    for package, root in roots.items():
        for init in root.rglob("__init__.py"):
            relative = init.parent.relative_to(root).parts
            found.add(".".join((package, *relative)))
    assert found == declared
