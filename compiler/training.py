"""STBP training and evaluation of zoo networks on the digits data.

Loss: cross-entropy of the output averaged over the T steps (the authors'
``model(x).mean(0)``); SGD (Nesterov) or AdamW with a cosine learning-rate
schedule; a progress bar over the batches of every epoch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .data import Split


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.01
    weight_decay: float = 5e-4
    optimizer: str = "adamw"   # "adamw" or "sgd"
    seed: int = 0
    progress: bool = True


@dataclass
class TrainResult:
    test_accuracy: float
    epoch_losses: list[float] = field(default_factory=list)
    epoch_accuracies: list[float] = field(default_factory=list)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, nesterov=True, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose adamw or sgd")


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray | torch.Tensor, batch_size: int = 128,
            progress: bool = False, desc: str = "evaluate") -> torch.Tensor:
    """Per-step outputs ``[T, N, classes]`` of a spiking model in eval mode."""
    model.eval()
    x = torch.as_tensor(x)
    outs = []
    for i in tqdm(range(0, len(x), batch_size), desc=desc, disable=not progress, leave=False):
        outs.append(model(x[i:i + batch_size]))
    return torch.cat(outs, dim=1)


def accuracy(outputs: torch.Tensor, labels: np.ndarray | torch.Tensor) -> float:
    """``argmax(mean over steps)`` against the labels."""
    pred = outputs.mean(0).argmax(1)
    return float((pred == torch.as_tensor(labels)).float().mean())


def train(model: nn.Module, train_split: Split, test_split: Split, cfg: TrainConfig) -> TrainResult:
    """Train ``model`` in place; returns the final test accuracy and per-epoch figures."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    x, y = train_split.tensors()
    opt = make_optimizer(model, cfg)
    steps_per_epoch = (len(x) + cfg.batch_size - 1) // cfg.batch_size
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss()
    result = TrainResult(test_accuracy=0.0)
    bar = tqdm(total=cfg.epochs * steps_per_epoch, desc="train", disable=not cfg.progress, unit="batch")
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            opt.zero_grad()
            loss = loss_fn(model(x[idx]).mean(0), y[idx])
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            bar.update(1)
        result.epoch_losses.append(total / len(x))
        acc = accuracy(predict(model, test_split.x), test_split.y)
        result.epoch_accuracies.append(acc)
        bar.set_postfix(epoch=epoch + 1, loss=f"{result.epoch_losses[-1]:.3f}", test_acc=f"{100 * acc:.2f}%")
    bar.close()
    result.test_accuracy = result.epoch_accuracies[-1] if result.epoch_accuracies else \
        accuracy(predict(model, test_split.x), test_split.y)
    return result
