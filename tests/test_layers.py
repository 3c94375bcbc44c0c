"""The layer rules of docs/architecture.md ("Layers"), checked over the import graph.

Every module under ``distwm/`` is parsed with :mod:`ast` (nothing is imported); its
``distwm.*`` imports (module level and inside functions, absolute and relative, ``import x``
and ``from x import y``) are checked against the rules. Each violation names the importing
file, the line and the imported module.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "distwm"

#: the seed's flat re-export modules under distwm/models and the family each belongs to
FLAT_FAMILY_MODULES = {
    "dreamer_rssm": "dreamer",
    "rssm": "planet", "planet_agent": "planet", "planet_loss": "planet", "planet_env": "planet",
    "rssm_heads": "planet",
    "modular_rssm": "modular_rssm",
    "iris_transformer": "iris", "iris_agent": "iris",
    "latent_action_model": "genie", "dynamics_model": "genie",
    "jepa_agent": "jepa",
}
#: the seed's re-export packages under distwm/models: each module's family (the package itself
#: belongs to none)
SEED_PACKAGES = {"diffusion": {"diamond_diffusion": "diamond", "reward_termination": "diamond",
                               "actor_critic": "diamond", "DiT": "dit", "DDPM": "dit"}}
#: flat modules under distwm/models that belong to no family (shared by several)
SHARED_MODELS_MODULES = {"vit", "vit_pos_embed", "scheduled_parts", "step_batches"}
#: packages that import no model family (distwm.models.*, distwm.training.*)
LOW_LAYERS = ("blocks", "vision", "utils", "memory", "envs", "loop")
#: config modules that are not a family's (every other ``distwm.configs.*_config`` is)
GENERIC_CONFIGS = {"distwm.configs.rl_config", "distwm.configs.runtime_config"}
DRIVER = "distwm.runtime.driver"


@dataclass(frozen=True)
class Import:
    source: str        # importing module, e.g. "distwm.runtime.driver"
    path: str          # its file, relative to the repository root
    line: int
    target: str        # imported module, e.g. "distwm.utils.dreamer_utils" or "torch"
    module_level: bool  # runs when the importing module is imported

    def __str__(self) -> str:
        where = "" if self.module_level else " (inside a function)"
        return f"{self.path}:{self.line} imports {self.target}{where}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_package(name: str) -> bool:
    return _modules()[name].name == "__init__.py"


def _resolve_relative(source: str, level: int, module: str | None) -> str:
    base = source.split(".")
    if not _is_package(source):
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST, module_level: bool, type_checking: bool):
    """Yield ``(import node, module_level, under TYPE_CHECKING)`` of the whole tree."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, module_level, type_checking
        inner_level = module_level and not isinstance(
            child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), inner_level, True)
            for stmt in child.orelse:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), inner_level, type_checking)
            continue
        yield from _walk(child, inner_level, type_checking)


@cache
def _imports_of(source: str) -> tuple[Import, ...]:
    """Every import of module ``source`` (``import a.b`` -> ``a.b``; ``from a import b`` ->
    ``a`` and, where ``a.b`` is a distwm module, ``a.b``)."""
    path = _modules()[source]
    rel = str(path.relative_to(ROOT))
    tree = ast.parse(path.read_text(), filename=rel)
    out = []
    for node, module_level, type_checking in _walk(tree, True, False):
        if type_checking:
            module_level = False  # never runs
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = (_resolve_relative(source, node.level, node.module) if node.level
                    else node.module or "")
            targets = [base] if base else []
            for alias in node.names:
                sub = f"{base}.{alias.name}" if base else alias.name
                if sub in _modules():
                    targets.append(sub)
        out.extend(Import(source, rel, node.lineno, t, module_level) for t in targets if t)
    return tuple(out)


def _all_imports() -> list[Import]:
    return [imp for name in _modules() for imp in _imports_of(name)]


def _within(target: str, prefix: str) -> bool:
    return target == prefix or target.startswith(prefix + ".")


def _family(module: str) -> str | None:
    """The model family a ``distwm.models`` module belongs to (``None``: not a family's)."""
    parts = module.split(".")
    if len(parts) < 3 or parts[:2] != ["distwm", "models"]:
        return None
    head = parts[2]
    if head in SEED_PACKAGES:
        return SEED_PACKAGES[head].get(parts[3]) if len(parts) > 3 else None
    if head in FLAT_FAMILY_MODULES:
        return FLAT_FAMILY_MODULES[head]
    if f"distwm.models.{head}" in _modules() and _is_package(f"distwm.models.{head}"):
        return head  # every package under distwm/models is a family
    return None


def _in_layer(module: str, *packages: str) -> bool:
    return any(_within(module, f"distwm.{p}") for p in packages)


def _report(violations: list, rule: str) -> None:
    assert not violations, f"{rule}: {len(violations)} violation(s):\n  " + "\n  ".join(
        map(str, violations))


# -- the rules --------------------------------------------------------------------------------

def test_the_parser_sees_known_imports():
    imports = {(i.source, i.target) for i in _all_imports()}
    assert ("distwm.api", "distwm.registry") in imports
    assert ("distwm.registry", "distwm._names") in imports
    assert _family("distwm.models.dreamer.core") == "dreamer"
    assert _family("distwm.models.rssm") == "planet"
    assert _family("distwm.models.vit") is None
    assert _resolve_relative("distwm.models.dreamer.core", 1, "behavior") == "distwm.models.dreamer.behavior"
    assert _resolve_relative("distwm.models.dreamer", 2, None) == "distwm.models"


def test_every_flat_models_module_is_classified():
    """A new flat module under distwm/models (a seed re-export path) names its family here."""
    flat = {name.split(".")[2] for name, path in _modules().items()
            if name.count(".") == 2 and name.startswith("distwm.models.") and path.name != "__init__.py"}
    unknown = sorted(flat - set(FLAT_FAMILY_MODULES) - SHARED_MODELS_MODULES)
    assert not unknown, (f"distwm/models/{{{','.join(unknown)}}}.py: add to FLAT_FAMILY_MODULES "
                         "(its family) or SHARED_MODELS_MODULES in tests/test_layers.py")
    for package, families in SEED_PACKAGES.items():
        inside = {name.split(".")[3] for name, path in _modules().items()
                  if name.startswith(f"distwm.models.{package}.") and name.count(".") == 3}
        assert not inside - set(families), (f"distwm/models/{package}/{sorted(inside - set(families))}: add each "
                                            f"module's family to SEED_PACKAGES in tests/test_layers.py")


def test_low_layers_import_no_model_family():
    bad = [i for i in _all_imports() if _in_layer(i.source, *LOW_LAYERS)
           and (_within(i.target, "distwm.models") or _within(i.target, "distwm.training"))]
    _report(bad, f"{', '.join(LOW_LAYERS)} import no model family (distwm.models, distwm.training)")


def test_no_family_imports_another_family():
    bad = []
    for imp in _all_imports():
        mine, theirs = _family(imp.source), _family(imp.target)
        if mine is not None and theirs is not None and mine != theirs:
            bad.append(f"{imp} (family {mine!r} imports family {theirs!r})")
    _report(bad, "no family imports another family")


def _family_config(target: str) -> bool:
    return (_within(target, "distwm.configs") and target.split(".")[-1].endswith("_config")
            and target not in GENERIC_CONFIGS)


def test_runtime_imports_no_algorithm():
    bad = [i for i in _all_imports() if _in_layer(i.source, "runtime")
           and (_within(i.target, "distwm.models") or _within(i.target, "distwm.training")
                or _family_config(i.target))]
    _report(bad, "runtime/ imports no distwm.models, distwm.training or family config module")


def test_models_never_import_runtime():
    bad = [i for i in _all_imports() if _in_layer(i.source, "models") and _within(i.target, "distwm.runtime")]
    _report(bad, "models/ never import distwm.runtime")


def test_envs_and_configs_never_import_api():
    bad = [i for i in _all_imports() if _in_layer(i.source, "envs", "configs")
           and _within(i.target, "distwm.api")]
    _report(bad, "envs/ and configs/ never import distwm.api")


def _executed_by_importing(module: str) -> list[str]:
    """``module`` and the distwm packages whose ``__init__`` importing it runs."""
    parts = module.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts) + 1) if ".".join(parts[:k]) in _modules()]


def test_driver_module_level_closure_imports_no_torch():
    """``distwm.runtime.driver`` and every distwm module it imports at module level
    (transitively, package ``__init__`` files included) import torch only inside functions."""
    chain: dict[str, list[Import]] = {name: [] for name in _executed_by_importing(DRIVER)}
    todo = list(chain)
    bad = []
    while todo:
        name = todo.pop()
        for imp in _imports_of(name):
            if not imp.module_level:
                continue
            if _within(imp.target, "torch"):
                via = " <- ".join(f"{i.path}:{i.line}" for i in reversed(chain[name]))
                bad.append(f"{imp}" + (f" (reached from {DRIVER} via {via})" if via else ""))
                continue
            for reached in _executed_by_importing(imp.target):
                if reached.startswith("distwm") and reached not in chain:
                    chain[reached] = chain[name] + [imp]
                    todo.append(reached)
    _report(bad, f"{DRIVER} and its module-level distwm imports do not import torch at module level")


def test_importing_the_driver_does_not_import_torch():
    code = "import sys, distwm.runtime.driver; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False", (
        "importing distwm.runtime.driver imported torch (the driver process must not)")


@pytest.mark.parametrize("rule", ["low", "family", "runtime", "models", "api", "torch"])
def test_a_planted_violation_is_reported(rule, tmp_path, monkeypatch):
    """The checks catch what they are meant to (modules planted in a copy of the tree whose
    other modules are empty)."""
    planted = {
        "low": ({"distwm/envs/zz_bad.py": "def f():\n    from distwm.models.dreamer import core\n"},
                test_low_layers_import_no_model_family),
        "family": ({"distwm/models/dreamer/zz_bad.py": "from ..rssm import X\n"},
                   test_no_family_imports_another_family),
        "runtime": ({"distwm/runtime/zz_bad.py": "from distwm.configs import planet_config\n"},
                    test_runtime_imports_no_algorithm),
        "models": ({"distwm/models/zz_bad.py": "import distwm.runtime.env_worker\n"},
                   test_models_never_import_runtime),
        "api": ({"distwm/configs/zz_bad.py": "from distwm import api\n"}, test_envs_and_configs_never_import_api),
        "torch": ({"distwm/runtime/driver.py": "from distwm.utils import zz_bad\n",
                   "distwm/utils/zz_bad.py": "try:\n    import torch.nn as nn\nexcept ImportError:\n    pass\n"},
                  test_driver_module_level_closure_imports_no_torch),
    }
    files, check = planted[rule]
    for path in _modules().values():  # the same tree, every module empty
        dest = tmp_path / path.relative_to(ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text("")
    for rel, text in files.items():
        (tmp_path / rel).write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "distwm")
    for cached in (_modules, _imports_of):
        cached.cache_clear()
    try:
        with pytest.raises(AssertionError) as err:
            check()
        assert any(f"{rel}:" in str(err.value) for rel in files if "zz_bad" in rel), str(err.value)
    finally:
        for cached in (_modules, _imports_of):
            cached.cache_clear()
