"""Slow: membership audits on real CIFAR-10 (``pytest -m slow``).

A narrow ResNet9 is trained, without augmentation so that it memorises, on 90 % of a 2,500-image
CIFAR-10 subset: it is the model *retrained without* a random 10 % forget set. The attacks must
have power (they tell its training rows from test rows) and yet score the forget rows at chance
(forget rows look like test rows to them). ~2 minutes on two CPU cores.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from obliviate.attacks import entropy_attack, loss_auc, mia_efficacy, subsample, svc_attack
from obliviate.data import RandomForget, load_dataset, split_indices
from obliviate.metrics import EvalInputs, Outputs, compute_metrics
from obliviate.models import create_model
from obliviate.training import TrainConfig, fit, make_loader, predict_logits
from obliviate.utils import resolve_device


@pytest.mark.slow
def test_model_retrained_without_random_forget_set_scores_chance(cifar10_root) -> None:  # type: ignore[no-untyped-def]
    ds = load_dataset("cifar10", root=str(cifar10_root)).subset(train_per_class=250, test_per_class=100, seed=0)
    split = split_indices(ds.label_info(), RandomForget(0.1), seed=0)
    device = resolve_device("auto")
    cfg = TrainConfig(epochs=15, batch_size=64, lr=0.05, augment=False)
    model = create_model("resnet9", num_classes=10, in_chans=3, seed=0, width=0.125)
    fit(model, make_loader(ds, torch.as_tensor(split.retain), cfg, 0), cfg, device=device)

    def outputs(rows: np.ndarray | None, train: bool) -> Outputs:
        x, y = (ds.train_images, ds.train_labels) if train else (ds.test_images, ds.test_labels)
        r = torch.arange(len(y)) if rows is None else torch.as_tensor(rows)
        return Outputs(predict_logits(model, x, mean=ds.mean, std=ds.std, rows=r, device=device), y[r])

    forget, retain, test = (
        outputs(split.forget, True),
        outputs(split.retain, True),
        outputs(None, False),
    )
    train_acc = float((retain.preds == retain.labels).double().mean())
    test_acc = float((test.preds == test.labels).double().mean())
    assert train_acc > test_acc + 0.2, (train_acc, test_acc)  # it memorised its training rows

    # Loss threshold: power on members, chance on the forget rows.
    members = retain.subset(torch.as_tensor(subsample(len(retain), 1000, seed=0)))
    auc_members, auc_forget = loss_auc(members.loss, test.loss), loss_auc(forget.loss, test.loss)
    assert auc_members > 0.6, auc_members
    assert abs(auc_forget - 0.5) < 0.06, auc_forget

    # Fitted attacks on one half of retain/test, scored on the other half and on the forget rows.
    perm_r = torch.as_tensor(np.random.default_rng(1).permutation(len(retain)))
    perm_t = torch.as_tensor(np.random.default_rng(2).permutation(len(test)))
    fit_r, held_r = (
        retain.subset(perm_r[: len(perm_r) // 2]),
        retain.subset(perm_r[len(perm_r) // 2 :]),
    )
    fit_t, held_t = test.subset(perm_t[: len(perm_t) // 2]), test.subset(perm_t[len(perm_t) // 2 :])
    rates = {}
    for name, attack in (
        ("entropy_logreg", entropy_attack(seed=0)),
        ("svc_confidence", svc_attack("confidence", seed=0)),
    ):
        attack.fit(fit_r.probs, fit_r.labels, fit_t.probs, fit_t.labels)
        r_in, r_out = (
            attack.member_rate(held_r.probs, held_r.labels),
            attack.member_rate(held_t.probs, held_t.labels),
        )
        r_forget = attack.member_rate(forget.probs, forget.labels)
        rates[name] = (r_in, r_out, r_forget)
        assert r_in - r_out > 0.1, (name, rates[name])  # the attack has power
        assert abs(r_forget - r_out) < 0.1, (name, rates[name])  # forget rows look unseen
    assert mia_efficacy(attack, forget.probs, forget.labels) == pytest.approx(1 - rates["svc_confidence"][2])

    # The registered audits on the same outputs, this model in the "unlearned" seat.
    inputs = EvalInputs({"unlearned": {"forget": forget, "retain": retain, "test": test}}, num_classes=10, seed=0)
    values, _ = compute_metrics(["mia_loss", "mia_entropy", "mia_efficacy"], inputs)
    assert values["mia_loss/auc"] == auc_forget
    print(
        f"\ntrain acc {train_acc:.3f} test acc {test_acc:.3f} | AUC members {auc_members:.3f} forget {auc_forget:.3f}"
        f" | rates (held-in, held-out, forget) {rates} | metrics {values}"
    )
