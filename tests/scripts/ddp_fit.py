"""Train a tiny regression model with the engine under DDP (launched by tests/test_engine.py).

Usage: python ddp_fit.py OUT_DIR DEVICES [--resume] [--epochs N] [--forgery]
Lightning's subprocess launcher re-runs this script once per extra rank. ``--forgery``: a fixed linear fake
detector through the forgery recipe (lr 0), the epoch chosen on val_auc.
"""

import sys

import torch
from torch.utils.data import DataLoader, TensorDataset

from mmtrust.config import TrainSettings
from mmtrust.engine import TaskModule, fit


class Regress(TaskModule):
    def compute_loss(self, batch):
        x, y = batch
        return torch.nn.functional.mse_loss(self.model(x), y), {}


def main() -> None:
    out, devices = sys.argv[1], int(sys.argv[2])
    resume = "--resume" in sys.argv
    epochs = int(sys.argv[sys.argv.index("--epochs") + 1]) if "--epochs" in sys.argv else 2
    lr = float(sys.argv[sys.argv.index("--lr") + 1]) if "--lr" in sys.argv else 1e-2
    stop = int(sys.argv[sys.argv.index("--stop-after") + 1]) if "--stop-after" in sys.argv else None
    if "--forgery" in sys.argv:
        return forgery(out, devices)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=g)
    y = x @ torch.randn(8, 1, generator=g) + 0.1 * torch.randn(64, 1, generator=g)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    t = TrainSettings(epochs=epochs, batch_size=8, lr=lr, optimizer="adam", scheduler="onecycle", seed=0)
    train = DataLoader(TensorDataset(x[:48], y[:48]), batch_size=8, shuffle=True)
    val = DataLoader(TensorDataset(x[48:], y[48:]), batch_size=8)
    res = fit(Regress(model, t), train, val, out, t, devices=devices, accelerator="cpu", resume=resume,
              progress=False, stop_after_epochs=stop)
    if res.is_global_zero:
        print(f"RESULT world={res.trainer.world_size} epoch={res.trainer.current_epoch} "
              f"step={res.trainer.global_step} best={res.best_path}")


class Linear1(torch.nn.Module):  # one fake logit per row
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 1)

    def forward(self, x):
        return self.fc(x).squeeze(-1)


def forgery_data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(80, 8, generator=g)
    y = (x[:, 0] + torch.randn(80, generator=g) > 0).long()
    return x, y


def forgery(out: str, devices: int) -> None:
    from mmtrust.tasks.forgery import ForgeryRecipe

    x, y = forgery_data()
    torch.manual_seed(0)
    t = TrainSettings(epochs=2, batch_size=8, lr=0.0, optimizer="sgd", scheduler="none", seed=0, monitor="val_auc")
    train = DataLoader(TensorDataset(x[:48], y[:48]), batch_size=8, shuffle=True)
    val = DataLoader(TensorDataset(x[48:], y[48:]), batch_size=8)
    res = fit(ForgeryRecipe(Linear1(), t), train, val, out, t, devices=devices, accelerator="cpu", progress=False)
    if res.is_global_zero:
        print(f"RESULT world={res.trainer.world_size} best={res.best_path}")


if __name__ == "__main__":
    main()
