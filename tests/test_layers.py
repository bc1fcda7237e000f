"""The packages form layers and every import points down:

    top          dareu.cli, dareu.commands.*,  the command line and the workflows that combine everything,
                 dareu.service.*               and the service that runs them for removal requests
    rl           rl.*                         RL de-attribution: builds on the core and on attribution
    attribution  attribution.*                owner classifiers: build on the core
    core         dareu.* (the rest)           config, data, models, objectives, trainer, evaluation, runs

Imports inside functions count too: an import that points up is a cycle waiting to happen.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("dareu", "attribution", "rl")
RANK = {"core": 0, "attribution": 1, "rl": 2, "top": 3}


def layer(module: str) -> str | None:
    """The layer of a dotted module name, or None for a module outside the three packages."""
    root = module.split(".")[0]
    if root not in PACKAGES:
        return None
    if module == "dareu.cli" or module.startswith(("dareu.cli.", "dareu.commands", "dareu.service")):
        return "top"
    return "core" if root == "dareu" else root


def imports_of(path: Path, package_root: Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import in a file, relative ones resolved."""
    module = ".".join(path.relative_to(package_root).with_suffix("").parts)
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")[: -node.level]
                base = ".".join([*parts, base] if base else parts)
            out.append((base, node.lineno))
    return out


def upward_imports(root: Path) -> list[str]:
    """Every import of a lower layer's module that names a higher layer, as 'file:line module -> target'."""
    bad = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            module = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
            here = layer(module)
            for target, line in imports_of(path, root):
                there = layer(target)
                if there is not None and RANK[there] > RANK[here]:
                    bad.append(f"{path.relative_to(root)}:{line} {here} -> {there} ({target})")
    return bad


def test_every_import_points_down_the_layers():
    assert upward_imports(REPO) == []


def test_the_layer_check_catches_a_planted_upward_import(tmp_path):
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    assert upward_imports(tmp_path) == []
    planted = tmp_path / "dareu" / "evaluation" / "metrics.py"
    planted.write_text(planted.read_text() + "\n\ndef _late():\n    from rl.launch import run_unlearn  # noqa\n")
    [found] = upward_imports(tmp_path)
    assert found.startswith("dareu/evaluation/metrics.py:") and "core -> rl (rl.launch)" in found


# ---- one source of defaults -----------------------------------------------------------------------------

def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) and v and k != "forget_params" else
                   {f"{prefix}{k}": v})
    return out


def shipped_vs_defaults(cls: type, yaml_path: Path) -> list[str]:
    """Keys whose value in the shipped YAML differs from the dataclass default (or that the YAML lacks)."""
    from dareu.config import to_dict

    shipped, defaults = _flat(yaml.safe_load(yaml_path.read_text())), _flat(to_dict(cls()))
    return sorted(k for k in shipped.keys() | defaults.keys()
                  if k not in ("method",) and shipped.get(k, "<missing>") != defaults.get(k))


def _default_pairs():
    from attribution.config import AttributorConfig
    from dareu.commands.demo import DemoConfig
    from dareu.prepare import PrepareConfig
    from rl.config import DareUConfig

    configs = REPO / "configs"
    return [(DareUConfig, configs / "methods" / "dareu.yaml"), (PrepareConfig, configs / "prepare" / "default.yaml"),
            (DemoConfig, configs / "demo" / "default.yaml"), (AttributorConfig, configs / "attribution" / "llm.yaml")]


def test_shipped_yaml_equals_the_dataclass_defaults():
    for cls, path in _default_pairs():
        assert shipped_vs_defaults(cls, path) == [], path.name


def test_the_defaults_check_catches_a_planted_difference(tmp_path):
    from rl.config import DareUConfig

    planted = tmp_path / "dareu.yaml"
    planted.write_text((REPO / "configs" / "methods" / "dareu.yaml").read_text().replace(
        "retain_coef: 10.0", "retain_coef: 2.0"))
    assert shipped_vs_defaults(DareUConfig, planted) == ["aux.retain_coef"]


def test_every_shipped_method_yaml_loads_through_the_package_configs_dir():
    from dareu.config import CONFIGS_DIR
    from dareu.objectives import OBJECTIVES
    from dareu.unlearn.config import load_run_config, method_yaml

    assert CONFIGS_DIR.is_dir()
    for name in OBJECTIVES.names():
        path = method_yaml(name)
        assert path is not None and path.parent == CONFIGS_DIR / "methods", name
        shipped = _flat(yaml.safe_load(path.read_text()))
        loaded = _flat(__import__("dataclasses").asdict(load_run_config(name)))
        assert all(loaded[k] == v for k, v in shipped.items() if k != "method"), name
