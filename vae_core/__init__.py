"""vae_core: the small PyTorch package behind the VAE book.

Its modules form two groups. The library is what `python -m vae_core` and training run on: the model, its losses,
the data, training, evaluation and checkpoints. The book's helpers serve the chapters only: toy models, derivations,
figures and analyses. The rule: a library module never imports a book helper (a book helper may import the library),
so the command line and training work, and are tested, without any chapter's code. `tests/test_imports.py` checks the
rule and that every module is in exactly one group.
"""

from vae_core.model import VAE, VAEConfig

LIBRARY_MODULES = (
    "__main__",
    "checkpoint",
    "cli",
    "cuda_graph",
    "data",
    "densities",
    "evaluate",
    "images",
    "io",
    "lock",
    "losses",
    "messages",
    "model",
    "repro",
    "train",
)
"""The library: the command line and the training path, and what they import."""

BOOK_MODULES = ("aggregate", "bayes", "derivation", "diagram", "inference", "latent", "plots", "recap", "toy")
"""The book's helpers: used by the chapters, never by the library."""

__all__ = ["BOOK_MODULES", "LIBRARY_MODULES", "VAE", "VAEConfig"]
__version__ = "0.1.0"
