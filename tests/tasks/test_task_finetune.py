"""Fine-tuning: learns, never touches the caller's model, restores the best-val epoch."""

from __future__ import annotations

import pytest
import torch

from tasks import build
from tasks.finetune import Finetune


def test_learns_a_separable_task(colour_model, colour_splits):
    splits = colour_splits("multiclass")
    m = build("finetune", target="colour", epochs=4, lr=0.05, batch_size=16, augment=False).run(colour_model(), splits)
    assert m["auc"] > 0.95 and m["acc"] > 0.8
    assert 1 <= m["best_epoch"] <= 4 and len(m["val_acc_per_epoch"].split(",")) == 4
    assert m["features_cached"] == 0 and m["n_train"] == 90


def test_shuffled_labels_give_chance(colour_model, colour_splits):
    splits = colour_splits("multiclass", {"train": 150, "val": 60, "test": 300}, shuffle_labels=True, seed=4)
    m = build("finetune", target="colour", epochs=2, lr=0.05, batch_size=32).run(colour_model(), splits)
    assert abs(m["auc"] - 0.5) < 0.1


def test_multilabel_uses_bce(colour_model, colour_splits):
    m = build("finetune", target="channels", epochs=5, lr=0.05, batch_size=16, augment=False).run(colour_model(), colour_splits("multilabel"))
    assert m["auc"] > 0.9 and 0.0 <= m["acc"] <= 1.0


def test_caller_model_untouched(colour_model, colour_splits):
    model = colour_model()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng_state = torch.get_rng_state()
    build("finetune", target="colour", epochs=2, lr=0.1).run(model, colour_splits("multiclass"))
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())
    assert not model.training and not model.visual.training
    assert torch.equal(rng_state, torch.get_rng_state())  # ran under fork_rng


def test_deterministic_given_seed(colour_model, colour_splits):
    splits = colour_splits("multiclass")
    a = build("finetune", target="colour", epochs=2, lr=0.05, seed=3).run(colour_model(), splits)
    b = build("finetune", target="colour", epochs=2, lr=0.05, seed=3).run(colour_model(), splits)
    assert a == b


class Scripted(Finetune):
    """Val accuracies follow a script; every prediction pass records the head weights it used."""

    script = [0.2, 0.9, 0.5]

    def __init__(self, **kw):
        super().__init__(**kw)
        self.used: list[torch.Tensor] = []
        self._epoch = 0

    def _predict(self, model, encoder, head, dataset, kind):
        self.used.append(head.weight.detach().clone())
        return super()._predict(model, encoder, head, dataset, kind)

    def _selection_score(self, y_val, scores, kind):
        self._epoch += 1
        return self.script[self._epoch - 1]


def test_best_val_epoch_is_restored_for_test(colour_model, colour_splits):
    task = Scripted(target="colour", epochs=3, lr=0.05)
    m = task.run(colour_model(), colour_splits("multiclass"))
    assert m["best_epoch"] == 2 and m["val_acc"] == pytest.approx(0.9)
    assert m["val_acc_per_epoch"] == "0.2,0.9,0.5"
    val_epoch1, val_epoch2, val_epoch3, test_pass = task.used
    assert torch.equal(test_pass, val_epoch2)  # the weights of epoch 2, not the last ones
    assert not torch.equal(test_pass, val_epoch3)


def test_ties_keep_the_earliest_epoch(colour_model, colour_splits):
    task = Scripted(target="colour", epochs=3, lr=0.05)
    task.script = [0.7, 0.7, 0.7]
    assert task.run(colour_model(), colour_splits("multiclass"))["best_epoch"] == 1


def test_no_training_batch_of_one():
    from tasks.finetune import _train_batches

    assert [len(b) for b in _train_batches(33, 16)] == [16, 17]
    assert [len(b) for b in _train_batches(32, 16)] == [16, 16]
    assert [len(b) for b in _train_batches(1, 16)] == [1]
    assert sorted(i for b in _train_batches(49, 16) for i in b) == list(range(49))
