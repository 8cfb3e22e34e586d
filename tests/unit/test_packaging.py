"""The distribution installs one import package, `pmsq`, built from several top-level folders.

setuptools maps each folder under `pmsq` (`package-dir`) and installs exactly the packages
listed, so a new subpackage missing from the list would work in the editable checkout and be
absent from the wheel; these tests catch that without building one.
"""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]


def _setuptools() -> dict[str, Any]:
    with open(REPO_ROOT / "pyproject.toml", "rb") as file:
        config: dict[str, Any] = tomllib.load(file)["tool"]["setuptools"]
    return config


def _folder_of(package: str, package_dir: dict[str, str]) -> Path:
    """Where setuptools reads `package` from: its nearest mapped ancestor, then dotted parts."""
    parts = package.split(".")
    for cut in range(len(parts), 0, -1):
        mapped = ".".join(parts[:cut])
        if mapped in package_dir:
            return REPO_ROOT / package_dir[mapped] / Path(*parts[cut:])
    return REPO_ROOT / Path(*parts)


def test_every_listed_package_is_under_pmsq_and_is_a_folder_with_an_init() -> None:
    config = _setuptools()
    for package in config["packages"]:
        assert package == "pmsq" or package.startswith("pmsq."), package
        assert (_folder_of(package, config["package-dir"]) / "__init__.py").is_file(), package


def test_every_folder_with_an_init_under_a_mapped_root_is_listed() -> None:
    config = _setuptools()
    package_dir: dict[str, str] = config["package-dir"]
    roots = {"pmsq": REPO_ROOT / "pmsq"} | {
        package: REPO_ROOT / folder for package, folder in package_dir.items()
    }
    found = set()
    for root_package, root in roots.items():
        for init in root.rglob("__init__.py"):
            relative = init.parent.relative_to(root)
            if "__pycache__" not in relative.parts:
                found.add(".".join([root_package, *relative.parts]))
    assert found == set(config["packages"])


def test_the_mapped_names_are_the_ones_python_imports() -> None:
    """The editable install resolves each mapped name to its folder, whatever the cwd holds."""
    package_dir: dict[str, str] = _setuptools()["package-dir"]
    for package, folder in package_dir.items():
        module = importlib.import_module(package)
        assert module.__file__ is not None
        assert Path(module.__file__).parent == REPO_ROOT / folder, package


def test_the_typecheck_tree_mirrors_the_installed_layout() -> None:
    """mypy and import-linter read typecheck/pmsq (they cannot follow the editable install's
    hook): one relative symlink per entry of pmsq/ and per mapped folder. A module missing
    there would be skipped by both without a word."""
    package_dir: dict[str, str] = _setuptools()["package-dir"]
    mirror = REPO_ROOT / "typecheck" / "pmsq"
    expected = {
        entry.name: entry for entry in (REPO_ROOT / "pmsq").iterdir() if entry.name != "__pycache__"
    } | {
        package.removeprefix("pmsq."): REPO_ROOT / folder for package, folder in package_dir.items()
    }
    found = {link.name: link for link in mirror.iterdir()}
    assert set(found) == set(expected)
    for name, link in found.items():
        assert link.is_symlink(), name
        assert not Path(link.readlink()).is_absolute(), name
        assert link.resolve() == expected[name].resolve(), name


def test_the_entry_point_contract_names_every_module_of_the_domain() -> None:
    """import-linter's forbidden contract lists the domain's modules one by one: a new module
    left out of it could import the Celery entry points unchecked."""
    with open(REPO_ROOT / "pyproject.toml", "rb") as file:
        contracts = tomllib.load(file)["tool"]["importlinter"]["contracts"]
    [contract] = [c for c in contracts if c["type"] == "forbidden"]
    listed = set(contract["source_modules"]) | set(contract["forbidden_modules"])
    modules = {
        f"pmsq.workers.{entry.stem}"
        for entry in (REPO_ROOT / "workers").iterdir()
        if (entry.suffix == ".py" and entry.stem != "__init__")
        or (entry.is_dir() and (entry / "__init__.py").is_file())
    }
    assert modules == listed
