"""vae_core.data: parsers on small files written here, real HTTP downloads from a loopback server, every bad input."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import amat, dead_url, files_under, idx_gz

from vae_core import data

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
N_TRAIN, N_TEST, N_VALID = 12, 5, 4


def md5(raw: bytes) -> str:
    return hashlib.md5(raw).hexdigest()


@pytest.fixture
def small() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "train_images": rng.integers(0, 256, (N_TRAIN, 28, 28)),
        "train_labels": np.arange(N_TRAIN) % 10,
        "test_images": rng.integers(0, 256, (N_TEST, 28, 28)),
        "test_labels": np.arange(N_TEST)[::-1] % 10,
        "train": rng.integers(0, 2, (3, 784)),
        "valid": rng.integers(0, 2, (2, 784)),
        "test": rng.integers(0, 2, (2, 784)),
    }


@pytest.fixture
def env(tmp_path, monkeypatch):
    """An empty cache in tmp_path, no mirror, and public URLs that refuse connections."""
    monkeypatch.setenv("VAE_DATA_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("VAE_DATA_MIRROR", raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for name, spec in data.SPECS.items():
        monkeypatch.setitem(data.SPECS, name, replace(spec, urls=(dead_url(),)))
    monkeypatch.setattr(data, "MNIST_VALID_SIZE", N_VALID)
    monkeypatch.setattr(data, "TIMEOUT_S", 5)
    return tmp_path


@pytest.fixture
def mirror(env, small, monkeypatch):
    """A mirror folder laid out like the shared data folder, with its md5s in the registry; returns a writer."""
    root = env / "mirror"

    def put(name: str, raw: bytes, register: bool = True) -> None:
        subdir = "binarized_mnist" if name.endswith(".amat") else "mnist"
        (root / subdir).mkdir(parents=True, exist_ok=True)
        (root / subdir / name).write_bytes(raw)
        if register:
            monkeypatch.setitem(data.file_spec(name).md5, name, md5(raw))

    put("train-images-idx3-ubyte.gz", idx_gz(small["train_images"]))
    put("train-labels-idx1-ubyte.gz", idx_gz(small["train_labels"]))
    put("t10k-images-idx3-ubyte.gz", idx_gz(small["test_images"]))
    put("t10k-labels-idx1-ubyte.gz", idx_gz(small["test_labels"]))
    for split in data.SPLITS:
        put(f"binarized_mnist_{split}.amat", amat(small[split]))
    put.root = root
    return put


@pytest.fixture
def server(mirror):
    """A real HTTP server on 127.0.0.1 serving the mirror folder; returns (base URL, list of requested paths)."""
    requested: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            requested.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(mirror.root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requested
    httpd.shutdown()
    httpd.server_close()


# ---------------------------------------------------------------- parsers


def test_parse_amat_roundtrip(small):
    bits = small["train"]
    assert np.array_equal(data.parse_amat(amat(bits)), bits)
    assert np.array_equal(data.parse_amat(amat(bits)[:-1]), bits)  # no final newline is fine
    assert data.parse_amat(amat(bits)).dtype == np.uint8


def test_parse_amat_wrong_row_length(small):
    raw = amat(small["train"]).split(b"\n")
    raw[1] = raw[1][:-2]
    with pytest.raises(data.DataError, match="row 2 has 783 values, expected 784"):
        data.parse_amat(b"\n".join(raw), "x.amat")


def test_parse_amat_bad_value(small):
    raw = bytearray(amat(small["train"]))
    raw[2 * 784 + 10] = ord("2")  # row 2, value 6
    with pytest.raises(data.DataError, match=r"row 2 holds b'2', expected only 0 and 1"):
        data.parse_amat(bytes(raw))
    with pytest.raises(data.DataError, match="empty"):
        data.parse_amat(b"")


def test_parse_idx_roundtrip(small):
    images = data.parse_idx(idx_gz(small["train_images"]), 3)
    assert images.shape == (N_TRAIN, 784) and images.dtype == np.uint8
    assert np.array_equal(images, small["train_images"].reshape(N_TRAIN, 784))
    assert np.array_equal(data.parse_idx(idx_gz(small["train_labels"]), 1), small["train_labels"])


def test_parse_idx_truncated_gzip(small):
    raw = idx_gz(small["train_images"])
    with pytest.raises(data.DataError, match="not a complete gzip file"):
        data.parse_idx(raw[: len(raw) // 2], 3)
    with pytest.raises(data.DataError, match="not a complete gzip file"):
        data.parse_idx(b"not gzip at all", 3)


def test_parse_idx_wrong_magic(small):
    with pytest.raises(data.DataError, match="magic number 2049, expected 2051"):
        data.parse_idx(idx_gz(small["train_labels"]), 3)  # a labels file where images belong
    with pytest.raises(data.DataError, match="magic number 1234, expected 2051"):
        data.parse_idx(idx_gz(small["train_images"], magic=1234), 3)


def test_parse_idx_wrong_dims_or_length(small):
    images = small["train_images"]
    with pytest.raises(data.DataError, match="expected 28x28"):
        data.parse_idx(idx_gz(images[:, :27, :]), 3)
    with pytest.raises(data.DataError, match="header says"):
        data.parse_idx(idx_gz(images, dims=(N_TRAIN + 1, 28, 28)), 3)
    with pytest.raises(data.DataError, match="not a digit"):
        data.parse_idx(idx_gz(np.array([1, 2, 10])), 1)


# ---------------------------------------------------------------- downloads and loading


def test_download_over_http(server, monkeypatch, env):
    url, requested = server
    monkeypatch.setenv("VAE_DATA_MIRROR", url + "/")
    paths = data.download("binarized-mnist") + data.download("mnist")
    assert [p.name for p in paths] == list(data.SPECS["binarized-mnist"].files + data.SPECS["mnist"].files)
    for p in paths:
        assert p.parent == env / "cache" / data.file_spec(p.name).subdir
        assert md5(p.read_bytes()) == data.md5s()[p.name]
    assert "/binarized_mnist/binarized_mnist_valid.amat" in requested
    assert "/mnist/t10k-labels-idx1-ubyte.gz" in requested
    requested.clear()
    data.download("mnist")  # verified files in the cache are not fetched again
    assert requested == []


def test_load_binarized_over_http(server, monkeypatch, small):
    monkeypatch.setenv("VAE_DATA_MIRROR", server[0])
    for split in data.SPLITS:
        s = data.load("binarized-mnist", split, device=torch.device("cpu"))
        assert s.x.dtype == torch.float32 and s.x.device.type == "cpu"
        assert torch.equal(s.x, torch.tensor(small[split], dtype=torch.float32))
        assert s.labels is None and s.dynamic is False
        assert s.binarized(seed=3) is s.x and torch.equal(s.batch(torch.tensor([1, 0])), s.x[[1, 0]])


def test_load_mnist_from_relative_folder_mirror(mirror, monkeypatch, small, env):
    monkeypatch.chdir(env)
    monkeypatch.setenv("VAE_DATA_MIRROR", "mirror")  # relative to the working directory
    images = torch.tensor(small["train_images"].reshape(N_TRAIN, 784), dtype=torch.float32) / 255
    labels = torch.tensor(small["train_labels"])
    train, valid = data.load("mnist", "train"), data.load("mnist", "valid")
    assert torch.equal(train.x, images[:-N_VALID]) and torch.equal(valid.x, images[-N_VALID:])
    assert torch.equal(train.labels, labels[:-N_VALID]) and torch.equal(valid.labels, labels[-N_VALID:])
    test = data.load("mnist", "test")
    assert test.x.shape == (N_TEST, 784) and test.labels.dtype == torch.int64 and test.dynamic is True
    assert torch.equal(test.labels, torch.tensor(small["test_labels"]))
    assert 0.0 <= float(test.x.min()) and float(test.x.max()) <= 1.0
    # A dynamic split binarizes: once for evaluation (seeded), afresh for each batch it serves.
    once = test.binarized(seed=3)
    assert torch.equal(once, test.binarized(seed=3)) and not torch.equal(once, test.binarized(seed=4))
    assert set(once.unique().tolist()) <= {0.0, 1.0} and torch.equal(test.head(5).binarized(seed=3), once[:5])
    order, g = torch.randperm(N_TEST), torch.Generator().manual_seed(0)
    batches, labels = zip(*test.batches(order, 3, g), strict=True)
    assert [len(b) for b in batches] == [3] * (N_TEST // 3) + ([N_TEST % 3] if N_TEST % 3 else [])
    assert torch.equal(torch.cat(batches), torch.bernoulli(test.x[order], generator=torch.Generator().manual_seed(0)))
    assert torch.equal(torch.cat(labels), test.labels[order])  # each batch comes with its own labels


def test_parsed_cache_used_on_second_load(mirror, monkeypatch, env, small):
    monkeypatch.setenv("VAE_DATA_MIRROR", str(mirror.root))
    first = data.load("binarized-mnist", "valid")
    cache = env / "cache" / "binarized_mnist"
    (cache / "binarized_mnist_valid.amat").unlink()
    monkeypatch.delenv("VAE_DATA_MIRROR")  # nothing to fetch from: only the parsed cache can answer
    assert torch.equal(data.load("binarized-mnist", "valid").x, first.x)
    # A new version of the raw file (a new md5) is parsed again, and the stale parsed copy goes.
    monkeypatch.setenv("VAE_DATA_MIRROR", str(mirror.root))
    mirror("binarized_mnist_valid.amat", amat(1 - small["valid"]))
    assert torch.equal(data.load("binarized-mnist", "valid").x, 1 - first.x)
    assert [p.name for p in (cache / "parsed").iterdir()] == [
        f"binarized_mnist_valid.amat.{data.md5s()['binarized_mnist_valid.amat'][:12]}.npy"
    ]


def test_unreadable_parsed_cache_is_parsed_again(mirror, monkeypatch, env, small):
    monkeypatch.setenv("VAE_DATA_MIRROR", str(mirror.root))
    data.load("binarized-mnist", "test")
    (npy,) = (env / "cache" / "binarized_mnist" / "parsed").iterdir()
    npy.write_bytes(b"garbage")
    assert torch.equal(data.load("binarized-mnist", "test").x, torch.tensor(small["test"], dtype=torch.float32))


def test_checksum_mismatch_leaves_no_file(mirror, monkeypatch, env):
    monkeypatch.setenv("VAE_DATA_MIRROR", str(mirror.root))
    monkeypatch.setitem(data.file_spec("binarized_mnist_test.amat").md5, "binarized_mnist_test.amat", "0" * 32)
    with pytest.raises(data.DataError, match="checksum mismatch") as err:
        data.load("binarized-mnist", "test")
    assert "binarized_mnist_test.amat (md5 " + "0" * 32 in str(err.value)
    assert files_under(env / "cache") == []


def test_damaged_cached_file_is_replaced(mirror, monkeypatch, env, small):
    folder = env / "cache" / "mnist"
    folder.mkdir(parents=True)
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"damaged")
    monkeypatch.setenv("VAE_DATA_MIRROR", str(mirror.root))
    assert torch.equal(data.load("mnist", "test").labels, torch.tensor(small["test_labels"]))
    # With no source left, a damaged cached file is removed and the error says what to do.
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(b"damaged")
    monkeypatch.delenv("VAE_DATA_MIRROR")
    with pytest.raises(data.DataError, match=r"t10k-images-idx3-ubyte.gz \(md5"):
        data.download("mnist")
    assert not (folder / "t10k-images-idx3-ubyte.gz").exists()


def test_nothing_anywhere_says_where_to_put_files(env):
    with pytest.raises(data.DataError) as err:
        data.load("mnist", "test")
    message = str(err.value)
    assert "VAE_DATA_MIRROR" in message
    assert str(env / "cache" / "mnist") in message
    assert "t10k-images-idx3-ubyte.gz" in message and "ConnectionError" in message
    assert files_under(env / "cache") == []


def test_missing_mirror_folder_falls_back_and_fails_cleanly(env, monkeypatch):
    monkeypatch.setenv("VAE_DATA_MIRROR", str(env / "nowhere"))
    with pytest.raises(data.DataError, match="FileNotFoundError") as err:
        data.download("binarized-mnist")
    assert err.value.args[0].count(": ConnectionError:") == 3  # then each public URL was tried
    assert files_under(env / "cache") == []


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("t10k-images-idx3-ubyte.gz", lambda s: idx_gz(s["test_images"])[:-20], "not a complete gzip file"),
        ("t10k-images-idx3-ubyte.gz", lambda s: idx_gz(s["test_images"], magic=2049), "magic number 2049"),
        ("t10k-labels-idx1-ubyte.gz", lambda s: idx_gz(s["test_labels"], dims=(N_TEST + 3,)), "header says"),
        ("binarized_mnist_test.amat", lambda s: amat(s["test"])[:-3], "row 2 has 783 values"),
        ("binarized_mnist_test.amat", lambda s: amat(s["test"]).replace(b"1", b"7", 1), "row 1 holds b'7'"),
    ],
)
def test_bad_file_with_matching_md5_leaves_no_file(mirror, monkeypatch, env, small, name, make, message):
    mirror(name, make(small))
    monkeypatch.setenv("VAE_DATA_MIRROR", str(mirror.root))
    dataset = "binarized-mnist" if name.endswith(".amat") else "mnist"
    with pytest.raises(data.DataError, match=message) as err:
        data.load(dataset, "test")
    assert "fetch it again" in str(err.value)
    assert not [p for p in files_under(env / "cache") if Path(p).name.startswith((name, ".", "tmp"))]


def test_unknown_names_list_valid_ones(env):
    with pytest.raises(data.DataError, match="choose one of binarized-mnist, mnist"):
        data.load("cifar", "train")
    with pytest.raises(data.DataError, match="choose one of train, valid, test"):
        data.load("mnist", "validation")
    with pytest.raises(data.DataError, match="Unknown dataset"):
        data.download("fashion-mnist")


def test_binarize_is_a_seeded_bernoulli_draw():
    x = torch.full((2000, 784), 0.25)
    a = data.binarize(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, data.binarize(x, torch.Generator().manual_seed(1)))
    assert not torch.equal(a, data.binarize(x, torch.Generator().manual_seed(2)))
    assert set(a.unique().tolist()) == {0.0, 1.0} and a.dtype == torch.float32
    assert abs(float(a.mean()) - 0.25) < 0.005


def test_data_dir_and_md5s(monkeypatch, tmp_path):
    monkeypatch.setenv("VAE_DATA_DIR", str(tmp_path))
    assert data.data_dir() == tmp_path
    monkeypatch.delenv("VAE_DATA_DIR")
    assert data.data_dir().name == "vae_core"
    sums = data.md5s()
    assert set(sums) == {n for spec in data.SPECS.values() for n in spec.files}
    assert sums["binarized_mnist_train.amat"] == "db28b1a6ae0fe70cbd3da91acf46e477"
    sums.clear()
    assert data.md5s()  # a copy, not the registry


@pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"real MNIST files not found beside the repository ({SHARED_DATA})"
)
def test_real_data(env, monkeypatch):
    monkeypatch.setattr(data, "MNIST_VALID_SIZE", 10000)
    monkeypatch.setenv("VAE_DATA_MIRROR", str(SHARED_DATA))
    valid = data.load("binarized-mnist", "valid")
    assert valid.x.shape == (10000, 784) and valid.x.dtype == torch.float32
    assert set(valid.x.unique().tolist()) == {0.0, 1.0}
    test = data.load("mnist", "test")
    assert test.x.shape == (10000, 784) and test.labels.shape == (10000,)
    assert set(test.labels.tolist()) == set(range(10))
    assert 0.0 == float(test.x.min()) and float(test.x.max()) == 1.0


def test_each_raw_file_belongs_to_one_dataset_spec() -> None:
    assert data.file_spec("t10k-images-idx3-ubyte.gz") is data.SPECS["mnist"]
    assert data.file_spec("binarized_mnist_test.amat").subdir == "binarized_mnist"
    with pytest.raises(data.DataError, match="not a raw file"):
        data.file_spec("cifar-10.tar.gz")


def test_absolutize_env_resolves_relative_folders_only(monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VAE_DATA_MIRROR", "shared/data")
    monkeypatch.setenv("VAE_DATA_DIR", "https://example.org/cache")
    data.absolutize_env()
    assert os.environ["VAE_DATA_MIRROR"] == str(tmp_path / "shared" / "data")
    assert os.environ["VAE_DATA_DIR"] == "https://example.org/cache"
