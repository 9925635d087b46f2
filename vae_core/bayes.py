"""A conditional VAE as a classifier, by Bayes' rule, and what the chapter on conditional VAEs measures of it.

`label_posterior` turns the bounds log p(x | y) of every label into log p(y | x); `reliability` bins the resulting
probabilities by confidence (a reliability curve); `logistic_regression` fits the discriminative baseline on the same
pixels; `relabel` decodes an image's code under every label (Kingma et al. 2014's Fig. 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vae_core.model import VAE, evaluating


def label_posterior(log_px_given_y: Tensor, log_prior: Tensor) -> Tensor:
    """log p(y | x) = log p(x | y) + log p(y) - log sum_y' p(x | y') p(y'), for (n, C) bounds and (C,) log p(y)."""
    joint = log_px_given_y + log_prior
    return joint - torch.logsumexp(joint, dim=-1, keepdim=True)


@dataclass(frozen=True)
class Reliability:
    """Predictions binned by confidence (the largest p(y | x)): per bin, the mean confidence, the accuracy and the
    count; `ece` is the expected calibration error, sum over bins of count / n * |accuracy - confidence|."""

    confidence: Tensor
    accuracy: Tensor
    count: Tensor
    ece: float


def reliability(probs: Tensor, labels: Tensor, bins: int = 10) -> Reliability:
    """Bin the predictions `probs` (n, C) by their confidence into `bins` equal-width bins of [0, 1]."""
    confidence, predicted = probs.max(dim=-1)
    correct = (predicted == labels).double()
    index = torch.clamp((confidence * bins).long(), max=bins - 1)
    count = torch.bincount(index, minlength=bins).double()
    seen = count.clamp(min=1)
    conf = torch.bincount(index, weights=confidence.double(), minlength=bins) / seen
    acc = torch.bincount(index, weights=correct, minlength=bins) / seen
    ece = float(((count / len(labels)) * (acc - conf).abs()).sum())
    return Reliability(conf, acc, count, ece)


def logistic_regression(x: Tensor, labels: Tensor, classes: int, weight_decay: float, steps: int = 100) -> Tensor:
    """Multinomial logistic regression on the pixels: the weights (M + 1, C), bias last, that minimize the mean cross
    entropy plus weight_decay / 2 * |W|^2 (bias not penalized), by full-batch L-BFGS from zero."""
    design = torch.cat([x.double(), torch.ones(len(x), 1, dtype=torch.float64)], dim=1)
    weights = torch.zeros(design.shape[1], classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weights], max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(design @ weights, labels)
        loss = loss + 0.5 * weight_decay * weights[:-1].pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weights.detach()


def logistic_probs(weights: Tensor, x: Tensor) -> Tensor:
    """p(y | x) of the fitted logistic regression, (n, C)."""
    return torch.softmax(x.double() @ weights[:-1] + weights[-1], dim=-1)


@torch.no_grad()
def relabel(model: VAE, x: Tensor, labels: Tensor) -> Tensor:
    """Encode each image with its own label (the mean of q(z | x, y)), then decode that code under every label:
    Bernoulli means of shape (n, C, M), row i column c the image x_i redrawn as digit c."""
    classes = model.config.classes
    with evaluating(model):
        mu, _ = model.encoder(x, labels)
        codes = mu.repeat_interleave(classes, dim=0)
        every = torch.arange(classes).repeat(len(x))
        return torch.sigmoid(model.decoder(codes, every)).reshape(len(x), classes, -1)
