"""The digits data sets, made from scikit-learn's bundled UCI digits (no download).

Two forms, one split (fixtures README): ``train_test_split(range(1797),
test_size=0.2, random_state=0, stratify=target)`` → 1437 train, 360 test.

* ``"8"``: 1×8×8, ``(images/16 − 0.3)/0.4``.
* ``"32"``: 3×32×32 exactly as the fixtures: images/16 → bilinear resize to
  32×32 (``align_corners=False``) → repeated to 3 channels → ``(x − 0.3)/0.4``.

``calib`` is the first 256 training images.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

NORM_MEAN = 0.3
NORM_STD = 0.4
CALIB_SIZE = 256


@dataclass(frozen=True)
class Split:
    x: np.ndarray  # float32 [N, C, H, W]
    y: np.ndarray  # int64 [N]

    def __len__(self) -> int:
        return len(self.y)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(self.x), torch.from_numpy(self.y)


@dataclass(frozen=True)
class Digits:
    form: str
    train: Split
    test: Split
    calib: Split

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.x.shape[1:])

    def normalization(self) -> dict:
        return {"mean": NORM_MEAN, "std": NORM_STD, "pixel_scale": 1 / 16, "form": self.form}


FORMS = {"8": (1, 8, 8), "32": (3, 32, 32)}


def form_for_shape(input_shape) -> str:
    """The digits form whose images have ``input_shape``."""
    for form, shape in FORMS.items():
        if tuple(input_shape) == shape:
            return form
    raise ValueError(f"no digits form has input shape {tuple(input_shape)}; available: "
                     + ", ".join(f"{s[0]}x{s[1]}x{s[2]}" for s in FORMS.values()))


def _images(form: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)  # [N,1,8,8]
    if form == "32":
        images = torch.nn.functional.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False)
        images = images.repeat(1, 3, 1, 1)
    elif form != "8":
        raise ValueError(f"unknown digits form {form!r}; choose one of {sorted(FORMS)}")
    x = ((images - NORM_MEAN) / NORM_STD).numpy().astype(np.float32)
    return x, digits.target.astype(np.int64)


def load_digits_dataset(form: str = "8") -> Digits:
    """Train/test/calibration splits of the digits data in ``form`` ("8" or "32")."""
    from sklearn.model_selection import train_test_split

    x, y = _images(form)
    train_idx, test_idx = train_test_split(np.arange(len(y)), test_size=0.2, random_state=0, stratify=y)
    train = Split(x[train_idx], y[train_idx])
    test = Split(x[test_idx], y[test_idx])
    calib = Split(train.x[:CALIB_SIZE], train.y[:CALIB_SIZE])
    return Digits(form, train, test, calib)
