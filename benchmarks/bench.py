"""Training and evaluation throughput of vae_core against the canonical DataLoader loop, in one process, side by side.

Run from the repository root:  .venv/bin/python benchmarks/bench.py [--device cuda] [--quick] [--baseline DIR]

Every number of one table comes from the same run: the loops are interleaved repetition by repetition and each
figure is a median, so what compares is the ratio, not seconds across runs (the machine may be shared and noisy).
Data: synthetic seeded binary images of MNIST shape (no download needed).

FLOPs are counted from layer shapes only (matmuls; biases and elementwise ops are left out): a Linear with `i`
inputs and `o` outputs costs 2*B*i*o forward, 2*B*i*o for its weight gradient and 2*B*i*o for its input gradient,
except the encoder's first layer, whose input (the data) needs no gradient, so training costs exactly
3*forward - 2*B*784*h1.
"""

from __future__ import annotations

import argparse
import copy
import functools
import importlib
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.data import DataLoader, Dataset

from vae_core import losses
from vae_core.data import Split
from vae_core.evaluate import evaluate_elbo, iw_log_likelihood
from vae_core.model import VAE, VAEConfig
from vae_core.repro import make_deterministic
from vae_core.train import TrainConfig, TrainState, fit, make_optimizer

ROOT = Path(__file__).resolve().parents[1]

X_DIM = 784
Z_DIM = 20


def synthetic_mnist(n: int, seed: int, device: torch.device) -> torch.Tensor:
    """Binary images of MNIST shape: each pixel on with its own probability, drawn once (seeded)."""
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(X_DIM, generator=g) ** 3
    return torch.bernoulli(p.expand(n, X_DIM), generator=g).to(device)


def layer_shapes(hidden: tuple[int, ...]) -> list[tuple[int, int]]:
    """(inputs, outputs) of every Linear: encoder to 2*z (mu and log-variance), then the decoder back to 784."""
    enc = [X_DIM, *hidden, 2 * Z_DIM]
    dec = [Z_DIM, *reversed(hidden), X_DIM]
    return list(zip(enc[:-1], enc[1:], strict=True)) + list(zip(dec[:-1], dec[1:], strict=True))


def forward_flops(hidden: tuple[int, ...], batch: int) -> int:
    return sum(2 * batch * i * o for i, o in layer_shapes(hidden))


def train_flops(hidden: tuple[int, ...], batch: int) -> int:
    """Forward, weight gradients and input gradients, minus the first layer's input gradient."""
    return 3 * forward_flops(hidden, batch) - 2 * batch * X_DIM * hidden[0]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: torch.device) -> float:
    sync(device)
    tic = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - tic


# --- the reference: the canonical PyTorch training loop -------------------------------------------------------------


class TensorRows(Dataset):
    """A Dataset indexed per sample, as in the PyTorch examples."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.x[i]


def reference_epoch(model: VAE, x_cpu: torch.Tensor, batch: int, device: torch.device) -> None:
    """DataLoader(shuffle, default collation), per-batch .to(device), BCE, KL and their sum in separate steps, Adam."""
    loader = DataLoader(TensorRows(x_cpu), batch_size=batch, shuffle=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for xb in loader:
        xb = xb.to(device)
        optimizer.zero_grad()
        logits, mu, logvar = model(xb)
        bce = F.binary_cross_entropy_with_logits(logits, xb, reduction="sum")
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        loss = (bce + kl) / xb.shape[0]
        loss.backward()
        optimizer.step()


def ours_epoch(model: VAE, x: torch.Tensor, batch: int, cuda_graph: bool = True) -> None:
    """One epoch of `fit`: on CUDA its step replayed from a CUDA graph, or eager with `cuda_graph=False`."""
    fit(model, x, None, TrainConfig(epochs=1, batch_size=batch), progress=False, cuda_graph=cuda_graph)


# --- the ceiling: float32 matmuls --------------------------------------------------------------------------------


def step_gemms(hidden: tuple[int, ...], batch: int, device: torch.device) -> tuple[Callable[[], None], int]:
    """The exact matmuls of one training step (layouts as autograd runs them), as bare torch ops, and their FLOPs."""
    g = torch.Generator().manual_seed(0)
    ops = []
    flops = 0
    for n, (i, o) in enumerate(layer_shapes(hidden)):
        w = torch.randn(o, i, generator=g).to(device)
        b = torch.randn(o, generator=g).to(device)
        a = torch.randn(batch, i, generator=g).to(device)
        grad = torch.randn(batch, o, generator=g).to(device)
        ops.append(lambda a=a, w=w, b=b: torch.addmm(b, a, w.t()))  # forward
        ops.append(lambda a=a, grad=grad: grad.t() @ a)  # weight gradient
        flops += 4 * batch * i * o
        if n != 0:
            ops.append(lambda w=w, grad=grad: grad @ w)  # input gradient
            flops += 2 * batch * i * o

    def run() -> None:
        for op in ops:
            op()

    return run, flops


def big_gemm(n: int, device: torch.device) -> tuple[Callable[[], None], int]:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device)
    b = torch.randn(n, n, generator=g).to(device)
    return (lambda: a @ b), 2 * n**3


def rate(fn: Callable[[], object], flops: int, device: torch.device, min_seconds: float) -> float:
    """FLOP/s of `fn`, repeated until it has run for `min_seconds`."""
    fn()
    reps, seconds = 0, 0.0
    while seconds < min_seconds:
        seconds += timed(fn, device)
        reps += 1
    return flops * reps / seconds


def step_parts(init: VAE, batch: int, device: torch.device) -> dict[str, Callable[[], None]]:
    """One training step as fit takes it, and its parts: forward+backward alone, and the fused Adam step alone."""
    model = copy.deepcopy(init)
    optimizer = make_optimizer(model, 1e-3)
    x = synthetic_mnist(batch, seed=3, device=device)
    generator = torch.Generator(device=device).manual_seed(0)

    def forward_backward() -> None:
        optimizer.zero_grad(set_to_none=True)
        losses.loss(*model(x, generator), x).backward()

    def step() -> None:
        forward_backward()
        optimizer.step()

    forward_backward()
    parts = {"step": step, "forward_backward": forward_backward, "adam": optimizer.step}
    if device.type == "cuda":
        parts["captured"] = captured_step(init, batch, device)
    return parts


CAPTURED_STEPS = 20


def captured_step(init: VAE, batch: int, device: torch.device) -> Callable[[], None]:
    """An epoch of CAPTURED_STEPS full batches replayed from the CUDA graph (CapturedEpoch), per step: the replays,
    and the epoch's own work (its shuffle, schedule and one read of the statistics) shared out over its steps."""
    from vae_core.cuda_graph import CapturedEpoch  # CUDA only: the CPU benchmark runs on checkouts without it

    x = synthetic_mnist(CAPTURED_STEPS * batch, seed=3, device=device)
    config = TrainConfig(epochs=10**6, batch_size=batch)
    state = TrainState.create(copy.deepcopy(init), config, len(x))
    run = CapturedEpoch(state, Split(x))
    run()  # the warm-up steps and the capture
    return run  # one epoch a call; bench_training divides its time by CAPTURED_STEPS


def bench_adam(hidden: tuple[int, ...], args: argparse.Namespace, device: torch.device) -> dict:
    """One Adam step on the model's parameters: fused (what fit uses), foreach, and the per-parameter loop."""
    torch.manual_seed(0)
    model = VAE(VAEConfig(hidden=hidden)).to(device)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    optimizers = {
        "fused": torch.optim.Adam(model.parameters(), fused=True),
        "foreach": torch.optim.Adam(model.parameters(), foreach=True),
        "for_loop": torch.optim.Adam(model.parameters(), foreach=False),
    }
    seconds: dict[str, list[float]] = {name: [] for name in optimizers}
    for _ in range(5 * args.reps):
        for name, opt in optimizers.items():
            seconds[name].append(timed(lambda opt=opt: [opt.step() for _ in range(5)], device) / 5)
    ms = {name: 1e3 * statistics.median(v) for name, v in seconds.items()}
    return {"hidden": list(hidden), "params": sum(p.numel() for p in model.parameters()), "step_ms": ms}


# --- the IW bound streams over K --------------------------------------------------------------------------------


class LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an op produces."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


# --- the benchmark ------------------------------------------------------------------------------------------------


def bench_training(hidden: tuple[int, ...], batch: int, args: argparse.Namespace, device: torch.device) -> dict:
    x_cpu = synthetic_mnist(args.samples, seed=1, device=torch.device("cpu"))
    x = x_cpu.to(device)
    torch.manual_seed(0)
    init = VAE(VAEConfig(hidden=hidden)).to(device)
    step_fn, step_flops = step_gemms(hidden, batch, device)
    big_fn, big_flops = big_gemm(2048, device)
    # Warm up both loops and the kernels once, untimed.
    reference_epoch(copy.deepcopy(init), x_cpu[: 4 * batch], batch, device)
    ours_epoch(copy.deepcopy(init), x[: 4 * batch], batch)
    parts = step_parts(init, batch, device)
    part_s: dict[str, list[float]] = {name: [] for name in [*parts, "step_gemms"]}
    ref_s, ours_s, eager_s, step_rate, big_rate = [], [], [], [], []
    for _ in range(args.reps):
        for name, fn in [*parts.items(), ("step_gemms", step_fn)]:
            part_s[name].append(timed(lambda fn=fn: [fn() for _ in range(5)], device) / 5)
        ref_model, our_model = copy.deepcopy(init), copy.deepcopy(init)
        ref_s.append(timed(lambda m=ref_model: reference_epoch(m, x_cpu, batch, device), device))
        step_rate.append(rate(step_fn, step_flops, device, args.ceiling_seconds))
        ours_s.append(timed(lambda m=our_model: ours_epoch(m, x, batch), device))
        if device.type == "cuda":  # the same epoch with its steps eager
            eager_model = copy.deepcopy(init)
            eager_s.append(timed(lambda m=eager_model: ours_epoch(m, x, batch, cuda_graph=False), device))
        big_rate.append(rate(big_fn, big_flops, device, args.ceiling_seconds))
    if "captured" in part_s:
        part_s["captured"] = [s / CAPTURED_STEPS for s in part_s["captured"]]
    n_steps = -(-args.samples // batch)
    flops_per_epoch = sum(train_flops(hidden, min(batch, args.samples - s * batch)) for s in range(n_steps))
    ref_sps = args.samples / statistics.median(ref_s)
    ours_sps = args.samples / statistics.median(ours_s)
    ours_flops = flops_per_epoch / statistics.median(ours_s)
    ceiling_step = statistics.median(step_rate)
    ceiling_big = statistics.median(big_rate)
    return {
        "hidden": list(hidden),
        "batch": batch,
        "samples_per_epoch": args.samples,
        "reps": args.reps,
        "reference_samples_per_s": ref_sps,
        "ours_samples_per_s": ours_sps,
        "speedup": ours_sps / ref_sps,
        "train_flops_per_sample": flops_per_epoch / args.samples,
        "ours_flop_per_s": ours_flops,
        "reference_flop_per_s": flops_per_epoch / statistics.median(ref_s),
        "ceiling_step_gemms_flop_per_s": ceiling_step,
        "ceiling_2048_flop_per_s": ceiling_big,
        "ours_fraction_of_step_gemms": ours_flops / ceiling_step,
        "ours_fraction_of_2048": ours_flops / ceiling_big,
        "reference_ms_per_step": 1e3 * statistics.median(ref_s) / n_steps,
        "speedup_bound_by_matmuls": statistics.median(ref_s) / n_steps / statistics.median(part_s["step_gemms"]),
        "step_ms": {name: 1e3 * statistics.median(v) for name, v in part_s.items()},
        **({"ours_eager_samples_per_s": args.samples / statistics.median(eager_s)} if eager_s else {}),
        "raw_seconds": {
            "reference": ref_s,
            "ours": ours_s,
            **({"ours_eager": eager_s} if eager_s else {}),
            **{f"step_{k}": v for k, v in part_s.items()},
        },
    }


@functools.cache
def load_baseline(root: Path) -> ModuleType:
    """`vae_core.train` of another copy of the package, the folder `vae_core` under `root` (for instance an earlier
    commit's: `git archive COMMIT vae_core | tar -x -C root`), imported beside this one and set aside."""
    ours = {name: sys.modules.pop(name) for name in list(sys.modules) if name.split(".")[0] == "vae_core"}
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module("vae_core.train")
    finally:
        sys.path.remove(str(root))
        for name in [name for name in sys.modules if name.split(".")[0] == "vae_core"]:
            del sys.modules[name]
        sys.modules.update(ours)


def bench_baseline(hidden: tuple[int, ...], batch: int, args: argparse.Namespace, device: torch.device) -> dict:
    """One epoch of the baseline's `fit` against one of `fit` here, interleaved (in turn first), same model, data and
    settings; and whether the two give the same history and weights bit for bit."""
    base = load_baseline(Path(args.baseline))
    x = synthetic_mnist(args.samples, seed=1, device=device)
    torch.manual_seed(0)
    init = VAE(VAEConfig(hidden=hidden)).to(device)
    fits = {"baseline": (base.fit, base.TrainConfig), "ours": (fit, TrainConfig)}

    def one_epoch(name: str) -> tuple[VAE, list[dict]]:
        model, (fit_fn, config) = copy.deepcopy(init), fits[name]
        rows = fit_fn(model, x, None, config(epochs=1, batch_size=batch), progress=False).to_list()
        return model, [{k: v for k, v in row.items() if k != "seconds"} for row in rows]

    (theirs, their_rows), (ours, our_rows) = one_epoch("baseline"), one_epoch("ours")  # untimed: warm-up, comparison
    identical = their_rows == our_rows and all(
        torch.equal(u, v) for u, v in zip(theirs.state_dict().values(), ours.state_dict().values(), strict=True)
    )
    seconds: dict[str, list[float]] = {name: [] for name in fits}
    for rep in range(args.reps):
        for name in list(fits)[:: 1 if rep % 2 == 0 else -1]:
            seconds[name].append(timed(lambda name=name: one_epoch(name), device))
    paired = [o / t for o, t in zip(seconds["ours"], seconds["baseline"], strict=True)]
    return {
        "baseline": str(args.baseline),
        "hidden": list(hidden),
        "batch": batch,
        "samples_per_epoch": args.samples,
        "reps": args.reps,
        "baseline_epoch_s": statistics.median(seconds["baseline"]),
        "ours_epoch_s": statistics.median(seconds["ours"]),
        "ours_over_baseline_time": statistics.median(paired),
        "bit_identical": identical,
        "raw_seconds": seconds,
    }


def bench_evaluation(hidden: tuple[int, ...], args: argparse.Namespace, device: torch.device) -> dict:
    torch.manual_seed(0)
    model = VAE(VAEConfig(hidden=hidden)).to(device)
    x_elbo = synthetic_mnist(args.elbo_samples, seed=2, device=device)
    x_iw = x_elbo[: args.iw_samples]
    k, batch, chunk = args.k, 100, 100
    enc_flops = sum(2 * i * o for i, o in layer_shapes(hidden)[: len(hidden) + 1])
    dec_flops = sum(2 * i * o for i, o in layer_shapes(hidden)[len(hidden) + 1 :])
    elbo_flops = args.elbo_samples * (enc_flops + dec_flops)
    iw_flops = args.iw_samples * (enc_flops + k * dec_flops)
    evaluate_elbo(model, x_elbo[:2000])
    iw_log_likelihood(model, x_iw[:batch], k=chunk, batch_size=batch, chunk=chunk)
    elbo_s, iw_s = [], []
    for _ in range(args.iw_reps):
        elbo_s.append(timed(lambda: evaluate_elbo(model, x_elbo), device))
        iw_s.append(timed(lambda: iw_log_likelihood(model, x_iw, k=k, batch_size=batch, chunk=chunk), device))
    probe = LargestTensor()
    with probe:
        iw_log_likelihood(model, x_iw[:batch], k=k, batch_size=batch, chunk=chunk)
    elbo_rate = elbo_flops / statistics.median(elbo_s)
    iw_rate = iw_flops / statistics.median(iw_s)
    return {
        "hidden": list(hidden),
        "k": k,
        "iw_batch": batch,
        "iw_chunk": chunk,
        "iw_samples": args.iw_samples,
        "elbo_samples": args.elbo_samples,
        "elbo_samples_per_s": args.elbo_samples / statistics.median(elbo_s),
        "iw_sample_k_per_s": args.iw_samples * k / statistics.median(iw_s),
        "elbo_flop_per_s": elbo_rate,
        "iw_flop_per_s": iw_rate,
        "iw_over_elbo_flop_rate": iw_rate / elbo_rate,
        "iw_largest_tensor_numel": probe.largest,
        "iw_chunk_tensor_numel": chunk * batch * X_DIM,
        "iw_full_tensor_numel": k * batch * X_DIM,
        "raw_seconds": {"elbo": elbo_s, "iw": iw_s},
    }


def gflops(v: float) -> str:
    return f"{v / 1e9:7.1f}"


def architecture(row: dict) -> str:
    """The model of a result row, as its layer sizes: 784-500-500-20."""
    return "784-" + "-".join(map(str, row["hidden"])) + "-20"


def print_baseline(rows: list[dict]) -> None:
    if not rows:
        return
    print(f"\nfit of the baseline ({rows[0]['baseline']}) against fit here: one epoch, median seconds")
    print(f"{'model':<16}{'batch':>6}{'baseline':>10}{'ours':>9}{'ours/baseline':>15}  bit-identical")
    for r in rows:
        print(
            f"{architecture(r):<16}{r['batch']:>6}{r['baseline_epoch_s']:>10.3f}{r['ours_epoch_s']:>9.3f}"
            f"{r['ours_over_baseline_time']:>15.3f}  {r['bit_identical']}"
        )


def print_tables(result: dict) -> None:
    print(f"\n{result['device']}, torch {result['torch']}, {result['threads']} threads, {result['date']}")
    print_baseline(result.get("baseline", []))
    if "training" not in result:
        return
    print("\nTraining, one epoch of synthetic binary MNIST-shaped data (samples/s; GFLOP/s counted from layer shapes)")
    head = (
        f"{'model':<16}{'batch':>6}{'ref s/s':>10}{'ours s/s':>10}{'ratio':>7}{'ours GF/s':>10}"
        f"{'step-GEMM GF/s':>15}{'frac':>6}{'2048^3 GF/s':>12}{'frac':>6}"
    )
    print(head)
    for r in result["training"]:
        model = architecture(r)
        print(
            f"{model:<16}{r['batch']:>6}{r['reference_samples_per_s']:>10.0f}{r['ours_samples_per_s']:>10.0f}"
            f"{r['speedup']:>7.2f}{gflops(r['ours_flop_per_s']):>10}{gflops(r['ceiling_step_gemms_flop_per_s']):>15}"
            f"{r['ours_fraction_of_step_gemms']:>6.0%}{gflops(r['ceiling_2048_flop_per_s']):>12}"
            f"{r['ours_fraction_of_2048']:>6.0%}"
        )
    print("\nOne training step, median ms (share of the step): its matmuls alone, forward+backward, fused Adam")
    print(
        f"{'model':<16}{'batch':>6}{'step':>9}{'matmuls':>15}{'fwd+bwd':>15}{'Adam':>15}{'ref step':>10}"
        f"{'ref/matmuls':>12}"
    )
    for r in result["training"]:
        model = architecture(r)
        ms = r["step_ms"]
        cells = "".join(
            f"{ms[k]:>8.1f} ({ms[k] / ms['step']:>3.0%})" for k in ("step_gemms", "forward_backward", "adam")
        )
        bound = f"{r['reference_ms_per_step']:>10.1f}{r['speedup_bound_by_matmuls']:>12.2f}"
        print(f"{model:<16}{r['batch']:>6}{ms['step']:>9.1f}{cells}{bound}")
    captured = [r for r in result["training"] if "captured" in r["step_ms"]]
    if captured:
        print("\nCUDA: one step eager and replayed from a CUDA graph (ms), its matmuls alone; epochs (samples/s)")
        head = f"{'model':<16}{'batch':>6}{'eager':>9}{'captured':>10}{'ratio':>7}{'matmuls':>9}"
        print(f"{head}{'eager s/s':>11}{'ours s/s':>10}")
        for r in captured:
            model = architecture(r)
            ms = r["step_ms"]
            print(
                f"{model:<16}{r['batch']:>6}{ms['step']:>9.3f}{ms['captured']:>10.3f}"
                f"{ms['step'] / ms['captured']:>7.1f}"
                f"{ms['step_gemms']:>9.3f}{r['ours_eager_samples_per_s']:>11.0f}{r['ours_samples_per_s']:>10.0f}"
            )
    print("\nOne Adam step on the model's parameters, median ms")
    print(f"{'model':<16}{'params':>10}{'fused':>8}{'foreach':>9}{'for-loop':>10}")
    for r in result["adam"]:
        model = architecture(r)
        ms = r["step_ms"]
        print(f"{model:<16}{r['params']:>10,}{ms['fused']:>8.2f}{ms['foreach']:>9.2f}{ms['for_loop']:>10.2f}")
    print("\nEvaluation: single-sample ELBO (batch 2000) against the IW bound (K, batch 100, chunks of 100 over K)")
    print(
        f"{'model':<16}{'K':>6}{'ELBO s/s':>10}{'ELBO GF/s':>10}{'IW s*K/s':>10}{'IW GF/s':>9}{'IW/ELBO':>9}"
        f"  {'largest tensor (chunk / full K)'}"
    )
    for r in result["evaluation"]:
        model = architecture(r)
        sizes = f"{r['iw_largest_tensor_numel']:,} ({r['iw_chunk_tensor_numel']:,} / {r['iw_full_tensor_numel']:,})"
        print(
            f"{model:<16}{r['k']:>6}{r['elbo_samples_per_s']:>10.0f}{gflops(r['elbo_flop_per_s']):>10}"
            f"{r['iw_sample_k_per_s']:>10.0f}{gflops(r['iw_flop_per_s']):>9}{r['iw_over_elbo_flop_rate']:>9.2f}"
            f"  {sizes}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (make_deterministic's default is 2)")
    parser.add_argument("--samples", type=int, default=2048, help="training samples per timed epoch")
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions per training configuration")
    parser.add_argument("--batches", default="128,1024")
    parser.add_argument("--models", default="500;500,500", help="hidden sizes, ';' between models")
    parser.add_argument("--k", type=int, default=1000, help="importance samples for the IW bound")
    parser.add_argument("--iw-samples", type=int, default=100)
    parser.add_argument("--elbo-samples", type=int, default=10000)
    parser.add_argument("--iw-reps", type=int, default=3)
    parser.add_argument("--ceiling-seconds", type=float, default=0.5, help="time per ceiling measurement")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few samples, one repetition")
    parser.add_argument("--baseline", default=None, help="a folder holding another vae_core: time its fit against ours")
    parser.add_argument("--only-baseline", action="store_true", help="time only that comparison")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results-<device>.json)")
    args = parser.parse_args()
    if args.quick:
        args.samples, args.reps, args.iw_samples, args.elbo_samples, args.iw_reps = 1024, 1, 100, 2000, 1
        args.k, args.ceiling_seconds = 200, 0.1
    device = torch.device(args.device)
    make_deterministic(args.threads)
    models = [tuple(int(h) for h in m.split(",")) for m in args.models.split(";")]
    batches = [int(b) for b in args.batches.split(",")]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or "cpu")
    result = {
        "command": " ".join([".venv/bin/python", "benchmarks/bench.py", *sys.argv[1:]]),
        "device": f"{device.type}: {name}",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "data": "synthetic seeded binary images of MNIST shape",
    }
    if args.baseline:
        result["baseline"] = [bench_baseline(h, b, args, device) for h in models for b in batches]
    if not args.only_baseline:
        result["training"] = [bench_training(h, b, args, device) for h in models for b in batches]
        result["adam"] = [bench_adam(h, args, device) for h in models]
        result["evaluation"] = [bench_evaluation(h, args, device) for h in models]
    out = Path(args.out) if args.out else ROOT / "benchmarks" / f"results-{device.type}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print_tables(result)
    print(f"\nwrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()
