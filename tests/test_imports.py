"""The package's two groups of modules (`vae_core.LIBRARY_MODULES`, `vae_core.BOOK_MODULES`): every module is in one,
and no library module imports a book helper, at the top or inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import vae_core

PACKAGE = Path(vae_core.__file__).parent


def modules() -> set[str]:
    return {path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__"}


def imported_modules(name: str) -> set[str]:
    """The vae_core modules that module `name` imports, wherever the import statement is (a function's too)."""
    found = set()
    for node in ast.walk(ast.parse((PACKAGE / f"{name}.py").read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}  # `from vae_core import losses`
    return {m.split(".")[1] for m in found if m.startswith("vae_core.") and m.split(".")[1] in modules()}


def test_every_module_is_in_exactly_one_group() -> None:
    library, book = set(vae_core.LIBRARY_MODULES), set(vae_core.BOOK_MODULES)
    assert not library & book, f"in both groups: {sorted(library & book)}"
    assert library | book == modules(), (
        f"add each new module to LIBRARY_MODULES or BOOK_MODULES in vae_core/__init__.py: "
        f"unlisted {sorted(modules() - library - book)}, listed but missing {sorted(library | book - modules())}"
    )


@pytest.mark.parametrize("name", vae_core.LIBRARY_MODULES)
def test_library_module_imports_no_book_helper(name: str) -> None:
    wrong = imported_modules(name) & set(vae_core.BOOK_MODULES)
    assert not wrong, f"vae_core.{name} (library) imports the book's helpers {sorted(wrong)}"


def test_the_import_parser_sees_every_form() -> None:
    """The parser finds top-level, `from vae_core import x` and in-function imports (cli imports images in one)."""
    assert {"data", "checkpoint", "images", "train"} <= imported_modules("cli")
    assert "cuda_graph" in imported_modules("train")  # imported inside fit()
