"""Training: a smoke run, checkpoint reuse and keys, and the embedded default's accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from xai_bench.engine.context import RunContext
from xai_bench.run import run
from xai_bench.training.lit import Classifier
from xai_bench.training.recipe import Recipe
from xai_bench.utils.errors import UserInputError
from xai_bench.workspace import Workspace

TINY = (
    "benchmark=train", "model.net.widths=[4,8,8]", "dataset.datamodule.n_train=96",
    "dataset.datamodule.n_val=32", "dataset.datamodule.n_test=32", "train.max_epochs=1",
    "train.batch_size=32", "trainer=cpu", "benchmark.progress=false",
)  # fmt: skip


def _context(cfg: DictConfig, run_dir: Path) -> RunContext:
    return Workspace(cfg, run_dir).context()


def test_train_smoke_saves_and_reuses_checkpoint(make_cfg, tmp_path) -> None:
    cfg = make_cfg(*TINY)
    out = run(cfg, tmp_path / "run1")
    assert out["reused"] is False and 0.0 <= out["test_acc"] <= 1.0
    folder = _context(cfg, tmp_path / "run1").model_trainer().checkpoint_dir
    assert out["checkpoint"] == str(folder) and (folder / "model.pt").is_file()
    assert (folder / "lightning" / "last.ckpt").is_file()
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["epochs"] == 1
    # resumes load checkpoints with weights_only=True: the recipe is stored as plain values
    ckpt = torch.load(folder / "lightning" / "last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["recipe"] == Recipe.from_mapping(cfg.train).to_dict()

    again = run(cfg, tmp_path / "run2")  # another run dir: finds the checkpoint, trains nothing
    assert again["reused"] is True and again["test_acc"] == out["test_acc"]
    assert run(cfg, tmp_path / "run1")["cached"] is True  # same run dir: the result itself

    other = _context(make_cfg(*TINY, "train.lr=0.01"), tmp_path).model_trainer()
    assert other.checkpoint_dir != folder, "a new recipe must not reuse a checkpoint"
    same = _context(make_cfg(*TINY, "num_workers=1", "trainer=auto"), tmp_path).model_trainer()
    assert same.checkpoint_dir == folder, "runtime settings do not change the key"

    trained = _context(make_cfg(*TINY, "model.weights=trained", "train_if_missing=false"), tmp_path)
    state = torch.load(folder / "model.pt", weights_only=True)
    for key, value in trained.model.state_dict().items():
        assert torch.equal(value, state[key])
    assert not trained.model.training


def test_recipe_from_mapping_checks_keys_and_values(make_cfg) -> None:
    cfg = make_cfg("train.lr=1", "train.optimizer=sgd")
    recipe = Recipe.from_mapping(cfg.train)  # a DictConfig: every key of run.yaml's `train:`
    assert recipe.optimizer == "sgd" and recipe.lr == 1.0 and isinstance(recipe.lr, float)
    assert recipe.to_dict() == OmegaConf.to_container(cfg.train)
    base = Recipe(optimizer="sgd", gamma=0.1)
    assert Recipe.from_mapping({"lr": 0.05}, base) == Recipe(optimizer="sgd", lr=0.05, gamma=0.1)
    assert Recipe.from_mapping(None, base) == base and Recipe.from_mapping(base) is base
    with pytest.raises(UserInputError, match=r"train: unknown key\(s\) epochs; valid keys: optim"):
        Recipe.from_mapping({"epochs": 3}, name="train")
    with pytest.raises(UserInputError, match="optimizer must be one of adam, adamw, sgd, got 'x'"):
        Recipe.from_mapping({"optimizer": "x"})
    with pytest.raises(UserInputError, match="batch_size"):
        Recipe(batch_size=0)


def test_classifier_optimiser_follows_the_recipe() -> None:
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
    recipe = Recipe(optimizer="sgd", lr=0.2, weight_decay=0.01, step_size=2, gamma=0.3)
    module = Classifier(net, recipe)
    assert module.hparams == {"recipe": recipe.to_dict(), "multilabel": False}
    out = module.configure_optimizers()
    opt, sched = out["optimizer"], out["lr_scheduler"]
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["nesterov"]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]
    assert [len(g["params"]) for g in opt.param_groups] == [2, 4]  # weights | biases, BN
    assert opt.param_groups[0]["lr"] == 0.2 and (sched.step_size, sched.gamma) == (2, 0.3)
    plain = Classifier(net).configure_optimizers()  # Recipe(): Adam, constant rate
    assert isinstance(plain, torch.optim.Adam) and plain.param_groups[0]["lr"] == 1e-3


def test_recipe_schedule_known_answers() -> None:
    """Milestones x gamma per epoch and a linear per-step warm-up (OPPSD, Hooker et al.)."""
    r = Recipe(optimizer="sgd", milestones=[2, 4], gamma=0.1, warmup_epochs=1)
    factors = [r.lr_factor(step, steps_per_epoch=10) for step in (0, 4, 9, 10, 19, 20, 39, 40)]
    assert factors == pytest.approx([0.1, 0.5, 1.0, 1.0, 1.0, 0.1, 0.1, 0.01])
    assert Recipe(step_size=3, gamma=0.5).lr_factor(35, 5) == 0.25  # epoch 7: two decays
    assert Recipe().lr_factor(1000, 7) == 1.0
    with pytest.raises(UserInputError, match="not both"):
        Recipe(milestones=[3], step_size=2)
    with pytest.raises(UserInputError, match="milestones must increase"):
        Recipe(milestones=[5, 3])
    assert Recipe.from_mapping({"milestones": [30, 60]}).to_dict()["milestones"] == [30, 60]


def test_scheduled_training_ends_at_the_decayed_rate(tmp_path) -> None:
    """A real fit: 3 epochs with milestones [1, 2] (x 0.5 each) and SGD without Nesterov end
    at lr x 0.25; the optimiser state resumes from the checkpoint as a plain dict."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    class Data(pl.LightningDataModule):
        def train_dataloader(self) -> DataLoader:
            g = torch.Generator().manual_seed(0)
            x, y = torch.randn(40, 4, generator=g), torch.randint(0, 3, (40,), generator=g)
            items = [{"image": x[i], "label": y[i]} for i in range(40)]
            return DataLoader(items, batch_size=8)

    recipe = Recipe(optimizer="sgd", lr=0.2, milestones=[1, 2], gamma=0.5, warmup_epochs=0.5,
                    nesterov=False, max_epochs=3)  # fmt: skip
    module = Classifier(nn.Linear(4, 3), recipe)
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(module, datamodule=Data())
    opt = trainer.optimizers[0]
    assert not opt.defaults["nesterov"] and opt.defaults["momentum"] == 0.9
    assert opt.param_groups[0]["lr"] == pytest.approx(0.2 * 0.25)
    assert trainer.lr_scheduler_configs[0].interval == "step"
    assert trainer.lr_scheduler_configs[0].scheduler.last_epoch == 15  # 3 epochs x 5 steps
    trainer.save_checkpoint(tmp_path / "last.ckpt")  # resumes load with weights_only=True
    state = torch.load(tmp_path / "last.ckpt", weights_only=True)["lr_schedulers"][0]
    assert state["last_epoch"] == 15


def test_val_every_validates_on_schedule_and_the_final_accuracy_is_the_same(tmp_path) -> None:
    """``val_every`` sets the epochs validated while fitting (0: none); the reported
    ``val_acc`` is the validation of the final weights either way, and the training itself is
    the same (same test accuracy)."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    from xai_bench.training.fit import train_classifier

    class Data(pl.LightningDataModule):
        batch_size = 8

        def _items(self, seed: int) -> list[dict]:
            g = torch.Generator().manual_seed(seed)
            x, y = torch.randn(48, 4, generator=g), torch.randint(0, 3, (48,), generator=g)
            return [{"image": x[i] + y[i], "label": y[i]} for i in range(48)]

        def train_dataloader(self) -> DataLoader:
            return DataLoader(self._items(0), batch_size=8, shuffle=False)

        def val_dataloader(self) -> DataLoader:
            return DataLoader(self._items(1), batch_size=16)

        def test_dataloader(self) -> DataLoader:
            return DataLoader(self._items(2), batch_size=16)

    kwargs = {"accelerator": "cpu", "enable_checkpointing": False}
    out = {}
    for every in (1, 2, 0):
        torch.manual_seed(0)
        recipe = Recipe(lr=0.05, max_epochs=3, val_every=every)
        out[every] = train_classifier(nn.Linear(4, 3), Data(), tmp_path / str(every), kwargs,
                                      recipe, progress=False)  # fmt: skip
    assert [h["epoch"] for h in out[1]["history"]] == [1.0, 2.0, 3.0]
    assert [h["epoch"] for h in out[2]["history"]] == [2.0]
    assert out[0]["history"] == []
    assert (
        out[0]["val_acc"]
        == out[1]["val_acc"]
        == out[2]["val_acc"]
        == pytest.approx(out[1]["history"][-1]["val/acc"])
    )
    assert out[0]["test_acc"] == out[1]["test_acc"] == out[2]["test_acc"]
    assert Recipe(val_every=0).key_dict()["val_every"] == 0
    assert "val_every" not in Recipe().key_dict()  # the default keeps earlier keys
    with pytest.raises(UserInputError, match="val_every must be >= 0"):
        Recipe(val_every=-1)


def test_embedded_default_reaches_90_percent(make_cfg, tmp_path) -> None:
    """The README's figure: the embedded ResNet-8 on shapes reaches >= 90% test accuracy."""
    cfg = make_cfg(
        "experiment=embedded", "benchmark=train", "benchmark.progress=false", "trainer=cpu"
    )
    out = run(cfg, tmp_path / "train")
    assert out["test_acc"] >= 0.90
    overview = run(make_cfg("experiment=embedded"), tmp_path / "overview")
    assert (
        overview["accuracy"] == out["test_acc"]
        or abs(overview["accuracy"] - out["test_acc"]) < 1e-6
    )
    assert (tmp_path / "overview" / "samples.png").stat().st_size > 10_000


def test_train_seed_lets_a_seed_sweep_share_one_checkpoint(make_cfg, tmp_path) -> None:
    """``seed`` is the run's (evaluation) seed; ``train_seed`` (default: ``seed``) keys the
    trained checkpoint and its data, so ``seed=1 train_seed=0`` evaluates seed 0's model."""

    def checkpoint(*overrides: str) -> tuple[Path, int]:
        cfg = make_cfg("benchmark=overview", *overrides)
        ws = Workspace(cfg, tmp_path / "run")
        return ws.checkpoint_dir, int(cfg.dataset.datamodule.seed)

    zero, data_zero = checkpoint("seed=0")
    assert checkpoint("seed=1", "train_seed=0") == (zero, data_zero)
    one, data_one = checkpoint("seed=1")
    assert one != zero and (data_zero, data_one) == (0, 1)
    assert checkpoint("seed=0", "train_seed=1") == (one, 1)
