"""Runs PyTorch Lightning 1.9.4's own ``lr_find`` (the reference toolkit's ``auto_lr_find``) on modules whose
step losses are given ({name: losses} as JSON on stdin), and prints the rates, smoothed losses and suggestion it
records for each, as JSON.

Run apart from the tests' process (``python lightning_lr_find.py ROOT < losses.json`` with the reference's
Lightning on PYTHONPATH), so its imports stay out of it."""

import json
import sys

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset


class GivenLosses(pl.LightningModule):
    """Training step i returns the given loss i (through a parameter, so there is something to optimise)."""

    def __init__(self, losses):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.losses, self.calls, self.lr = losses, 0, 1e-3

    def training_step(self, batch, index):
        loss = self.weight.sum() * 0 + self.losses[self.calls]
        self.calls += 1
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def range_test(losses, root):
    batches = DataLoader(TensorDataset(torch.zeros(37, 1)), batch_size=1)  # 37 steps an epoch: the test spans epochs
    trainer = pl.Trainer(max_epochs=10, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", default_root_dir=root)
    finder = trainer.tuner.lr_find(GivenLosses(losses), train_dataloaders=batches)
    return {"rates": finder.results["lr"], "losses": finder.results["loss"], "suggestion": finder.suggestion()}


def main():
    json.dump({name: range_test(losses, sys.argv[1]) for name, losses in json.load(sys.stdin).items()}, sys.stdout)


if __name__ == "__main__":
    main()
