"""Re-execute chapters from their jupytext `.md` sources and refresh the paired `.ipynb` outputs.

Usage: python scripts/execute.py [book/q1_3_kl.md ...]   (no argument: every chapter under book/)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import jupytext
import nbformat
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from vae_core.data import absolutize_env
from vae_core.io import atomic_write, atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
TIMES = BOOK / "_execution_times.json"


LAST = "reproducibility"  # records the other chapters' times, so it runs after them


def chapters() -> list[Path]:
    """Every paired source (`.md` under book/ with a jupytext header); the reproducibility page comes last."""
    paired = [p for p in BOOK.glob("*.md") if p.read_text().startswith("---\njupytext:")]
    return sorted(paired, key=lambda p: (p.stem == LAST, p.name))


def scrub(nb: nbformat.NotebookNode) -> None:
    """Drop volatile metadata so re-executing an unchanged chapter gives an unchanged file."""
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata.pop("widgets", None)
    for i, cell in enumerate(nb.cells):
        cell.metadata.pop("execution", None)
        cell["id"] = f"cell-{i}"  # stable ids: an unchanged chapter re-executes to an unchanged file


def execute(md: Path, timeout: int = 900) -> float:
    """Execute one chapter in its folder, write the paired .ipynb atomically, return the seconds taken.

    The kernel talks over local IPC sockets in a private temporary folder, not TCP, so nothing is reachable from
    outside the machine (and ipykernel has no reason to warn about unencrypted TCP).
    """
    nb = jupytext.read(md)
    with tempfile.TemporaryDirectory(prefix="vae-kernel-") as sockets:
        kernel = KernelManager(kernel_name="python3", transport="ipc", ip=str(Path(sockets) / "kernel"))
        client = NotebookClient(nb, km=kernel, timeout=timeout, resources={"metadata": {"path": str(md.parent)}})
        start = time.perf_counter()
        try:
            client.execute()
        except CellExecutionError as err:
            raise SystemExit(f"{md.relative_to(ROOT)} failed:\n{err}") from None
        finally:
            if kernel.has_kernel:  # the client shuts down only kernels it started itself
                kernel.shutdown_kernel(now=True)
        seconds = time.perf_counter() - start
    scrub(nb)
    atomic_write(md.with_suffix(".ipynb"), lambda tmp: nbformat.write(nb, tmp))
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", type=Path, help="chapter .md files (default: all)")
    args = parser.parse_args(argv)
    absolutize_env()
    targets = [p.resolve() for p in args.chapters] or chapters()
    times = json.loads(TIMES.read_text()) if TIMES.exists() else {}
    for md in targets:
        if md.suffix != ".md" or not md.exists():
            raise SystemExit(f"{md} is not a chapter .md source; pass e.g. book/q1_3_kl.md")
        seconds = execute(md)
        times[md.stem] = round(seconds, 1)
        print(f"{md.relative_to(ROOT)}: {seconds:.1f} s", flush=True)
        atomic_write_text(TIMES, json.dumps(dict(sorted(times.items())), indent=2) + "\n")  # kept if a later one fails
    return 0


if __name__ == "__main__":
    sys.exit(main())
