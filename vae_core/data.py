"""MNIST for the book: md5-verified downloads, a mirror override, IDX and .amat parsing, a parsed cache.

Two datasets, each split with its own tensor of images flattened to 784 float32 values:

- ``binarized-mnist``: Larochelle & Murray's fixed binarization, 50000 / 10000 / 10000, values in {0, 1}, no labels.
- ``mnist``: LeCun's grey images scaled to [0, 1], with labels. ``valid`` is the last 10000 images of the 60000
  training images (in file order, no shuffling) and ``train`` the first 50000; ``test`` is the 10000 test images.
  Binarize it per batch with :func:`binarize` (dynamic binarization).

Raw files live in ``data_dir()/<subdir>``. Each is fetched, in order, from the folder or URL in ``VAE_DATA_MIRROR``,
then from the public URLs, and kept only if its md5 matches. After the first parse a compact ``.npy`` copy, named
after the raw file's md5, makes later loads fast. Every file is written to a temporary name and renamed, so the
cache never holds a partial file.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import os
import shutil
import sys
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import platformdirs
import torch
from tqdm import TqdmWarning

from vae_core.io import atomic_write

with warnings.catch_warnings():
    warnings.simplefilter("ignore", TqdmWarning)  # pooch imports tqdm.auto, which warns in kernels without ipywidgets
    import pooch

SPLITS: tuple[str, ...] = ("train", "valid", "test")


@dataclass(frozen=True)
class DatasetSpec:
    """Where one dataset's raw files live: its cache subfolder, each file's md5, and the public URL bases to try."""

    subdir: str
    md5: dict[str, str]  # file name -> md5, in download order
    urls: tuple[str, ...]

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(self.md5)


SPECS: dict[str, DatasetSpec] = {
    "binarized-mnist": DatasetSpec(
        "binarized_mnist",
        {
            "binarized_mnist_train.amat": "db28b1a6ae0fe70cbd3da91acf46e477",
            "binarized_mnist_valid.amat": "bf37822a04e94123630de6a7dfd9c9ef",
            "binarized_mnist_test.amat": "14e41ae11040adba6ab8cb291eda0dd8",
        },
        ("http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/",),
    ),
    "mnist": DatasetSpec(
        "mnist",
        {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
    ),
}
DATASETS: tuple[str, ...] = tuple(SPECS)
MNIST_VALID_SIZE = 10000
MIRROR_ENV = "VAE_DATA_MIRROR"
DIR_ENV = "VAE_DATA_DIR"
TIMEOUT_S = 60

Downloader = Callable[..., bool | None]
"""A pooch downloader: called as (url, output_file, pooch, check_only=False); with check_only, if the file is there."""

_IDX_MAGIC = {1: 2049, 3: 2051}  # ndim -> magic number of an unsigned-byte IDX file
_AMAT_ROW = 2 * 784  # 784 digits, each followed by a space or, for the last, a newline


class DataError(RuntimeError):
    """Data that cannot be fetched or parsed; the message says what to do."""


@dataclass
class Split:
    """One split on one device: ``x`` is float32 (N, 784); ``labels`` int64 (N,) or None.

    A static split's ``x`` is binary and served as it is. A ``dynamic`` split's ``x`` holds grey values in [0, 1]
    and is binarized afresh (:func:`binarize`) each time it serves a batch, and once, with a fixed seed, for
    evaluation. Binarization is decided here alone: training asks the split for its batches (:meth:`batch`,
    :meth:`batches`) and evaluation for its binary data (:meth:`binarized`).
    """

    x: torch.Tensor
    labels: torch.Tensor | None = None
    dynamic: bool = False

    def __len__(self) -> int:
        return len(self.x)

    def batch(self, rows: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The examples at index tensor ``rows``, binarized afresh with ``generator`` if the split is dynamic.

        All on the device, without a host synchronization, so a CUDA graph can capture it.
        """
        batch = self.x.index_select(0, rows)
        return binarize(batch, generator) if self.dynamic else batch

    def batches(
        self, order: torch.Tensor, batch_size: int, generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """Consecutive batches of ``batch_size`` examples in the index ``order`` (the last may be smaller), each with
        its labels (None for a split without labels)."""
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            yield self.batch(rows, generator), self.labels_at(rows)

    def labels_at(self, rows: torch.Tensor) -> torch.Tensor | None:
        """The labels at index tensor ``rows``, or None for a split without labels."""
        return None if self.labels is None else self.labels.index_select(0, rows)

    def labels_for(self, classes: int, name: str = "this split") -> torch.Tensor | None:
        """The labels a model with ``classes`` classes takes: None for an unconditional model (classes 0), else the
        split's labels, checked to lie in 0 .. classes - 1 (a DataError says what to do otherwise)."""
        if classes == 0:
            return None
        if self.labels is None:
            raise DataError(
                f"{name} has no labels, and a conditional model needs them. Larochelle's binarized-mnist has none: "
                "use --dataset mnist (LeCun's labelled images, binarized dynamically)."
            )
        low, high = (int(self.labels.min()), int(self.labels.max())) if len(self.labels) else (0, 0)
        if low < 0 or high >= classes:
            raise DataError(
                f"{name} holds labels {low}..{high}, but the model knows the {classes} classes 0..{classes - 1}."
            )
        return self.labels

    def binarized(self, seed: int = 0) -> torch.Tensor:
        """All of ``x`` as binary data for evaluation: a dynamic split's one draw with a generator seeded ``seed``."""
        if not self.dynamic:
            return self.x
        return binarize(self.x, torch.Generator(device=self.x.device).manual_seed(seed))

    def head(self, n: int) -> Split:
        """The split's first ``n`` examples."""
        return Split(self.x[:n], None if self.labels is None else self.labels[:n], self.dynamic)


def as_split(x: torch.Tensor | Split) -> Split:
    """``x`` itself if it is a :class:`Split`, else binary data as a static split."""
    return x if isinstance(x, Split) else Split(x)


def data_dir() -> Path:
    """The cache folder: ``VAE_DATA_DIR`` if set, else the user cache folder of ``vae_core``."""
    return Path(os.environ.get(DIR_ENV) or platformdirs.user_cache_dir("vae_core")).expanduser()


def absolutize_env() -> None:
    """Make relative ``VAE_DATA_MIRROR`` and ``VAE_DATA_DIR`` folders absolute, against the current folder.

    Notebook kernels start in ``book/``, not where the command was typed, so the test run and ``scripts/execute.py``
    call this before they start any kernel.
    """
    for name in (MIRROR_ENV, DIR_ENV):
        value = os.environ.get(name, "").strip()
        if value and "://" not in value and not Path(value).expanduser().is_absolute():
            os.environ[name] = str(Path(value).expanduser().resolve())


def md5s() -> dict[str, str]:
    """Expected md5 of every raw file, by file name."""
    return {name: md5 for spec in SPECS.values() for name, md5 in spec.md5.items()}


def file_spec(name: str) -> DatasetSpec:
    """The spec of the dataset that raw file ``name`` belongs to."""
    spec = next((spec for spec in SPECS.values() if name in spec.md5), None)
    if spec is None:
        raise DataError(f"{name!r} is not a raw file of any dataset ({', '.join(DATASETS)}).")
    return spec


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A fresh Bernoulli draw of grey values in [0, 1] (dynamic binarization)."""
    return torch.bernoulli(x, generator=generator)


def _check(dataset: str, split: str | None = None) -> None:
    if dataset not in DATASETS:
        raise DataError(f"Unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}.")
    if split is not None and split not in SPLITS:
        raise DataError(f"Unknown split {split!r}; choose one of {', '.join(SPLITS)}.")


# ---------------------------------------------------------------- downloads


def _copy_from(folder: Path) -> Downloader:
    """A pooch downloader that copies ``folder/<file>`` (the file named by the URL's last part)."""

    def copy(url: str, output_file: str, pooch_obj: object, check_only: bool = False) -> bool | None:
        source = folder / url.rsplit("/", 1)[-1]
        if check_only:
            return source.is_file()
        if not source.is_file():
            raise FileNotFoundError("not in the mirror folder")
        shutil.copyfile(source, output_file)
        return None

    return copy


def _sources(spec: DatasetSpec) -> list[tuple[str, Downloader]]:
    """(URL base, downloader) pairs to try in order: the mirror, then the public URLs."""
    http = pooch.HTTPDownloader(progressbar=sys.stderr.isatty(), timeout=TIMEOUT_S)
    sources: list[tuple[str, Downloader]] = []
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if mirror.startswith(("http://", "https://")):
        sources.append((f"{mirror.rstrip('/')}/{spec.subdir}/", http))
    elif mirror:
        folder = Path(mirror).expanduser().resolve() / spec.subdir
        sources.append((f"{folder}/", _copy_from(folder)))
    sources += [(base, http) for base in spec.urls]
    return sources


@contextlib.contextmanager
def _quiet_pooch() -> Iterator[None]:
    """Keep pooch's INFO lines off stderr (they would show up in executed notebooks)."""
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _fetch(spec: DatasetSpec, names: tuple[str, ...]) -> list[Path]:
    """Make sure each named raw file is in the cache with its expected md5; return the paths."""
    subdir = spec.subdir
    folder = data_dir() / subdir
    paths, missing = [], {}
    for name in names:
        path, md5 = folder / name, spec.md5[name]
        if path.is_file() and pooch.file_hash(str(path), alg="md5") != md5:
            path.unlink()  # a damaged or foreign file: never keep it
        if not path.is_file():
            tried = []
            for base, downloader in _sources(spec):
                url = base + name
                try:
                    with _quiet_pooch():
                        pooch.retrieve(url, f"md5:{md5}", fname=name, path=folder, downloader=downloader)
                    break
                except ValueError as err:  # pooch's hash mismatch
                    tried.append(f"{url}: checksum mismatch ({err})")
                except Exception as err:  # network, HTTP status, missing mirror file: try the next source
                    tried.append(f"{url}: {type(err).__name__}: {err}")
            else:
                missing[name] = tried
        paths.append(path)
    if missing:
        lines = "\n".join(f"  {t}" for tried in missing.values() for t in tried)
        wanted = ", ".join(f"{n} (md5 {spec.md5[n]})" for n in missing)
        raise DataError(
            f"Could not get {wanted}.\nTried:\n{lines}\n"
            f"Put the files in {folder}, or set {MIRROR_ENV} to a folder that holds {subdir}/<file> "
            f"or to a URL that serves <URL>/{subdir}/<file>."
        )
    return paths


def download(dataset: str) -> list[Path]:
    """Fetch and md5-verify every raw file of ``dataset`` into the cache; return their paths."""
    _check(dataset)
    return _fetch(SPECS[dataset], SPECS[dataset].files)


# ---------------------------------------------------------------- parsers


def parse_amat(raw: bytes, name: str = "file") -> np.ndarray:
    """Larochelle's .amat text (rows of 784 space-separated 0/1) to a uint8 (N, 784) array of 0 and 1."""
    if raw and not raw.endswith(b"\n"):
        raw += b"\n"
    buf = np.frombuffer(raw, dtype=np.uint8)
    if buf.size and buf.size % _AMAT_ROW == 0:
        rows = buf.reshape(-1, _AMAT_ROW)
        digits, seps = rows[:, 0::2], rows[:, 1::2]
        if (
            ((digits == ord("0")) | (digits == ord("1"))).all()
            and (seps[:, :-1] == ord(" ")).all()
            and (seps[:, -1] == ord("\n")).all()
        ):
            return digits - np.uint8(ord("0"))
    # Slow path, only to say what is wrong.
    lines = raw.split(b"\n")[:-1]
    if not lines:
        raise DataError(f"{name} is empty. Delete it and fetch it again.")
    for i, line in enumerate(lines, start=1):
        values = line.split(b" ")
        if len(values) != 784:
            raise DataError(f"{name}: row {i} has {len(values)} values, expected 784. Delete it and fetch it again.")
        bad = next((v for v in values if v not in (b"0", b"1")), None)
        if bad is not None:
            raise DataError(f"{name}: row {i} holds {bad!r}, expected only 0 and 1. Delete it and fetch it again.")
    raise DataError(f"{name} is not in the .amat layout (784 values 0/1 a row). Delete it and fetch it again.")


def parse_idx(raw: bytes, ndim: int, name: str = "file") -> np.ndarray:
    """A gzipped unsigned-byte IDX file to an array: (N,) labels for ``ndim=1``, (N, 784) images for ``ndim=3``."""
    try:
        data = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{name} is not a complete gzip file ({err}). Delete it and fetch it again.") from err
    magic = _IDX_MAGIC[ndim]
    header = 4 + 4 * ndim
    if len(data) < header or int.from_bytes(data[:4], "big") != magic:
        found = int.from_bytes(data[:4], "big") if len(data) >= 4 else None
        raise DataError(
            f"{name}: IDX magic number {found}, expected {magic} (unsigned bytes, {ndim} dims). "
            "Is it the right file? Delete it and fetch it again."
        )
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if ndim == 3 and dims[1:] != (28, 28):
        raise DataError(f"{name}: images are {dims[1]}x{dims[2]}, expected 28x28. Delete it and fetch it again.")
    size = int(np.prod(dims))
    if len(data) != header + size:
        raise DataError(
            f"{name}: header says {dims} ({size} bytes) but the file holds {len(data) - header} bytes of data. "
            "Delete it and fetch it again."
        )
    array = np.frombuffer(data, dtype=np.uint8, offset=header).copy()
    if ndim == 1 and size and array.max() > 9:
        raise DataError(f"{name}: label {array.max()} is not a digit. Delete it and fetch it again.")
    return array.reshape(dims[0], -1) if ndim == 3 else array


# ---------------------------------------------------------------- parsed cache


def _save_npy(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to ``path`` atomically."""

    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:  # a file object: np.save would append .npy to a path
            np.save(f, array)

    atomic_write(path, write)


def _parsed(spec: DatasetSpec, name: str, parse: Callable[[bytes, str], np.ndarray], pack: bool = False) -> np.ndarray:
    """The parsed array of raw file ``name``, from the md5-keyed ``.npy`` cache, else fetched and parsed."""
    folder = data_dir() / spec.subdir
    cache = folder / "parsed" / f"{name}.{spec.md5[name][:12]}.npy"
    if cache.is_file():
        try:
            array = np.load(cache, allow_pickle=False)
            return np.unpackbits(array, axis=1, count=784) if pack else array
        except (OSError, ValueError):
            cache.unlink(missing_ok=True)  # unreadable: parse again
    (path,) = _fetch(spec, (name,))
    try:
        array = parse(path.read_bytes(), name)
    except DataError:
        path.unlink(missing_ok=True)  # it matched the md5 we hold but cannot be parsed: keep no bad file
        raise
    _save_npy(cache, np.packbits(array, axis=1) if pack else array)
    for stale in cache.parent.glob(f"{name}.*.npy"):  # parsed from another version of the raw file
        if stale != cache:
            stale.unlink(missing_ok=True)
    return array


def load(dataset: str, split: str, device: str | torch.device = "cpu") -> Split:
    """One split of ``dataset`` as float32 (N, 784) on ``device``, fetching and parsing it on first use."""
    _check(dataset, split)
    spec = SPECS[dataset]
    if dataset == "binarized-mnist":
        bits = _parsed(spec, f"binarized_mnist_{split}.amat", parse_amat, pack=True)
        return Split(torch.from_numpy(bits).to(device).float(), None, dynamic=False)
    prefix = "t10k" if split == "test" else "train"
    images = _parsed(spec, f"{prefix}-images-idx3-ubyte.gz", lambda raw, n: parse_idx(raw, 3, n))
    labels = _parsed(spec, f"{prefix}-labels-idx1-ubyte.gz", lambda raw, n: parse_idx(raw, 1, n))
    if len(images) != len(labels):
        raise DataError(
            f"{prefix} images ({len(images)}) and labels ({len(labels)}) differ in number. "
            f"Delete {data_dir() / spec.subdir} and fetch again."
        )
    if split != "test":
        if len(images) <= MNIST_VALID_SIZE:
            raise DataError(f"{prefix} set has {len(images)} images, too few for a {MNIST_VALID_SIZE} validation set.")
        rows = slice(-MNIST_VALID_SIZE, None) if split == "valid" else slice(None, -MNIST_VALID_SIZE)
        images, labels = images[rows], labels[rows]
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).float().div_(255.0)
    return Split(x, torch.from_numpy(labels.astype(np.int64)).to(device), dynamic=True)
