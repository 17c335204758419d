"""The package's layers (docs/architecture.md): imports point one way, down ``LAYERS``, and
no module imports another module's private (``_``-prefixed) names."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "multimodal_s2s"

# Top to bottom. A layer is one or more groups of modules (dotted prefixes under
# ``multimodal_s2s``); a module may import its own group and the layers below its own.
# Groups that share a layer (training | inference, models | data) never import each other.
LAYERS: list[list[tuple[str, ...]]] = [
    [("cli",)],
    [("corpora",)],
    [("training",), ("inference",)],
    [("config", "checkpoint")],
    [("search",)],
    [("models",), ("data",)],
    [("frontends",)],
    [
        (
            "text",
            "metrics",
            "masking",
            "devices",
            "cpu",
            "allocator",
            "atomic_file",
            "errors",
        )
    ],
]


def module_name(path: Path, root: Path = PACKAGE) -> str:
    """``multimodal_s2s/models/model.py`` -> ``multimodal_s2s.models.model``."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def place(module: str) -> tuple[int, int]:
    """(layer, group) of a module of the package, by the longest matching prefix."""
    inner = module.removeprefix("multimodal_s2s.")
    for layer, groups in enumerate(LAYERS):
        for group, prefixes in enumerate(groups):
            if any(inner == p or inner.startswith(p + ".") for p in prefixes):
                return layer, group
    raise AssertionError(f"{module} is in no layer of tests/test_architecture.py")


def imports(tree: ast.AST, module: str) -> list[tuple[str, list[str], int]]:
    """``(imported module, imported names, line)`` of every import of the package; for
    ``from multimodal_s2s.x import y`` where ``y`` is itself a module, that module."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(module.split(".")[: -node.level] + ([base] if base else []))
            names = [alias.name for alias in node.names]
            found.append((base, names, node.lineno))
    return [(name, names, line) for name, names, line in found if name.startswith("multimodal_s2s")]


def resolved(imported: str, names: list[str]) -> list[str]:
    """The modules an import reaches: ``from package import module`` reaches the module."""
    modules = [
        f"{imported}.{name}"
        for name in names
        if (PACKAGE.parent / f"{imported}.{name}".replace(".", "/")).with_suffix(".py").exists()
        or (PACKAGE.parent / f"{imported}.{name}".replace(".", "/")).is_dir()
    ]
    return modules or [imported]


def layer_violations(root: Path = PACKAGE) -> list[str]:
    """Every import of a higher layer, or of a sibling group of the same layer."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        if module == "multimodal_s2s":
            continue
        layer, group = place(module)
        for imported, names, line in imports(ast.parse(path.read_text()), module):
            for target in resolved(imported, names):
                if target == "multimodal_s2s":
                    continue
                target_layer, target_group = place(target)
                upward = target_layer < layer
                sideways = target_layer == layer and target_group != group
                if upward or sideways:
                    where = path.relative_to(root.parent)
                    problems.append(f"{where}:{line}: {module} imports {target}")
    return problems


def private_imports(paths: list[Path]) -> list[str]:
    """Every ``from multimodal_s2s... import _name`` and ``module._name`` of an imported
    package module."""
    problems = []
    for path in paths:
        tree = ast.parse(path.read_text())
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "multimodal_s2s"
            ):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        problems.append(f"{path.name}:{node.lineno}: imports {alias.name}")
                    aliases[alias.asname or alias.name] = alias.name
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("multimodal_s2s"):
                        aliases[alias.asname or alias.name.split(".")[0]] = alias.name
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and _is_module(aliases[node.value.id], tree)
            ):
                problems.append(f"{path.name}:{node.lineno}: uses {node.value.id}.{node.attr}")
    return problems


def _is_module(name: str, tree: ast.AST) -> bool:
    """Whether an imported name (bare or dotted) is a module of the package."""
    candidates = [name] + [
        f"{node.module}.{name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    ]
    for candidate in candidates:
        path = PACKAGE.parent / candidate.replace(".", "/")
        if path.with_suffix(".py").exists() or path.is_dir():
            return True
    return False


def python_files() -> list[Path]:
    folders = ("multimodal_s2s", "tests", "benchmarks", "recipes")
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


def test_every_module_has_a_layer():
    for path in PACKAGE.rglob("*.py"):
        if path.parent != PACKAGE or path.name != "__init__.py":
            place(module_name(path))


def test_no_module_imports_a_higher_layer_or_a_sibling():
    assert layer_violations() == []


def test_no_private_name_is_imported_across_modules():
    assert private_imports(python_files()) == []


@pytest.mark.parametrize(
    ("module", "line", "kind"),
    [
        ("models/decoder.py", "from multimodal_s2s.training.train import train\n", "upward"),
        ("models/decoder.py", "from multimodal_s2s.data.base import DataSource\n", "sibling"),
        ("text.py", "from multimodal_s2s import config\n", "upward"),
    ],
)
def test_a_wrong_way_import_is_found(tmp_path, module, line, kind):
    copy = tmp_path / "multimodal_s2s"
    for path in PACKAGE.rglob("*.py"):
        target = copy / path.relative_to(PACKAGE)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    (copy / module).write_text(line + (copy / module).read_text())
    problems = layer_violations(copy)
    assert len(problems) == 1, kind
    assert problems[0].startswith(f"multimodal_s2s/{module}:1: ")


def test_a_private_import_is_found(tmp_path):
    user = tmp_path / "user.py"
    user.write_text(
        "from multimodal_s2s.models.encoders.cnn import _hidden\n"
        "from multimodal_s2s.models.encoders import cnn\n"
        "cnn._other\n"
        "cnn.__name__\n"
    )
    assert private_imports([user]) == [
        "user.py:1: imports _hidden",
        "user.py:3: uses cnn._other",
    ]
