"""Tests of the interplay-fgsm distribution: conformance, a real outcome on digits, discovery."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import interplay
from interplay.artifacts import AdversarialExamples, TrainedModel, fingerprint
from interplay.errors import ArtifactError, ConfigError
from interplay.testing import parametrize_with_checks
from interplay.testing.synthetic import synthetic_task, tiny_context, tiny_model

EPS = 0.1
# Measured with seeds 0-2 (torch 2.x, CPU): clean test accuracy 0.94-0.95, robust accuracy at
# eps=0.1 0.44-0.48, i.e. a drop of 0.46-0.51. Asserting a drop of 0.3 leaves room for
# platform and version differences while still failing for a broken gradient or sign.
MIN_ACCURACY_DROP = 0.3


# -- (1) conformance ----------------------------------------------------------------------------
@parametrize_with_checks(["fgsm"])
def test_conformance(plugin, check):
    check(plugin)


# -- (2) a real outcome on digits ---------------------------------------------------------------
@pytest.fixture(scope="module")
def digits():
    registry = interplay.get_registry()
    task = registry.create("digits").load().partitioned(defender=0.5, adversary=0.5, seed=0)
    context = interplay.RunContext(
        seed=0, model=registry.create("mlp"), recipe=interplay.TrainingRecipe(epochs=15, batch_size=64)
    )
    model = context.train(task.defender_train)
    return task, model, context


def fgsm(**params):
    return interplay.get_registry().create("fgsm", **params)


def accuracy(predictions: torch.Tensor, y: torch.Tensor) -> float:
    return float((predictions == y).float().mean())


def test_clean_accuracy_is_high(digits):
    task, model, _ = digits
    assert accuracy(model.predict(task.test.x), task.test.y) > 0.85


def test_fgsm_lowers_accuracy(digits):
    task, model, context = digits
    adv = fgsm(eps=EPS).run(model, data=task, context=context)
    assert isinstance(adv, AdversarialExamples)
    assert adv.norm == "linf" and adv.eps == EPS
    assert torch.equal(adv.y, task.test.y)
    assert torch.equal(adv.clean_predictions, model.predict(task.test.x))
    assert torch.equal(adv.predictions, model.predict(adv.x_adv))
    clean = accuracy(adv.clean_predictions, adv.y)
    robust = accuracy(adv.predictions, adv.y)
    assert robust <= clean - MIN_ACCURACY_DROP, f"clean {clean:.3f}, robust {robust:.3f}"


def test_fgsm_respects_budget_and_range(digits):
    task, model, context = digits
    x = task.test.x
    adv = fgsm(eps=EPS).run(model, data=task, context=context)
    assert adv.x_adv.shape == x.shape and adv.x_adv.dtype == x.dtype
    assert float(adv.x_adv.min()) >= 0.0 and float(adv.x_adv.max()) <= 1.0
    assert float((adv.x_adv - x).abs().max()) <= EPS + 1e-6
    # Away from the clip bounds every coordinate moves by exactly eps (a sign step).
    inside = (x >= EPS) & (x <= 1 - EPS)
    moved = (adv.x_adv - x).abs()[inside]
    assert float((moved - EPS).abs().max()) <= 1e-6


def test_zero_eps_changes_nothing(digits):
    task, model, context = digits
    adv = fgsm(eps=0.0).run(model, data=task, context=context)
    assert torch.equal(adv.x_adv, task.test.x)
    assert torch.equal(adv.predictions, adv.clean_predictions)


def test_larger_eps_is_not_weaker(digits):
    task, model, context = digits
    small = fgsm(eps=0.05).run(model, data=task, context=context)
    large = fgsm(eps=0.2).run(model, data=task, context=context)
    assert accuracy(large.predictions, large.y) <= accuracy(small.predictions, small.y)


def test_targeted_moves_towards_target_label(digits):
    task, model, context = digits
    target_label = (task.test.y + 1) % task.num_classes
    before = accuracy(model.predict(task.test.x), target_label)
    adv = fgsm(eps=0.2, targeted=True).run(model, data=task, context=context)
    assert accuracy(adv.predictions, target_label) >= before + 0.2


def test_batch_size_does_not_change_the_result(digits):
    task, model, context = digits
    whole = fgsm(eps=EPS).run(model, data=task, context=context)
    batched = fgsm(eps=EPS, batch_size=7).run(model, data=task, context=context)
    assert torch.equal(whole.x_adv, batched.x_adv)


def test_split_parameter_selects_rows(digits):
    task, model, context = digits
    adv = fgsm(eps=EPS, split="train").run(model, data=task, context=context)
    assert len(adv.y) == len(task.train)
    with pytest.raises(ArtifactError, match="no split 'validation'"):
        fgsm(split="validation").run(model, data=task, context=context)


# -- (3) nothing is modified --------------------------------------------------------------------
def test_model_and_task_are_unchanged(digits):
    task, model, context = digits
    model.module.train()  # the attack must use eval mode and restore the caller's mode
    state = {k: v.clone() for k, v in model.module.state_dict().items()}
    # Training may leave the last step's gradients behind; the attack must not touch them.
    grads = [None if p.grad is None else p.grad.clone() for p in model.module.parameters()]
    before = (fingerprint(task), fingerprint(model))
    try:
        fgsm(eps=EPS, targeted=True).run(model, data=task, context=context)
        fgsm(eps=EPS).run(model, data=task, context=context)
        assert model.module.training
    finally:
        model.module.eval()
    after_state = model.module.state_dict()
    assert state.keys() == after_state.keys()
    assert all(torch.equal(state[k], after_state[k]) for k in state)
    for before_grad, parameter in zip(grads, model.module.parameters(), strict=True):
        assert (parameter.grad is None) == (before_grad is None)
        assert before_grad is None or torch.equal(parameter.grad, before_grad)
    assert (fingerprint(task), fingerprint(model)) == before


def test_eval_mode_is_used():
    task = synthetic_task("image")
    context = tiny_context()
    model = tiny_model(task, context)
    dropout = torch.nn.Sequential(torch.nn.Dropout(0.9), model.module)
    noisy = TrainedModel(module=dropout.train(), num_classes=model.num_classes, input_shape=model.input_shape)
    first = fgsm(eps=EPS).run(noisy, data=task, context=context)
    second = fgsm(eps=EPS).run(noisy, data=task, context=context)
    assert torch.equal(first.x_adv, second.x_adv)
    assert dropout.training


# -- (4) discovery ------------------------------------------------------------------------------
def test_registry_names_the_distribution():
    spec = interplay.get_registry().get("fgsm")
    assert spec.distribution == "interplay-fgsm"
    assert spec.kind == "attack" and spec.risks == ("S1",)
    assert (spec.input, spec.output, spec.access) == ("TrainedModel", "AdversarialExamples", "white-box")


def test_manifest_does_not_import_torch():
    code = (
        "import sys, importlib\n"
        "importlib.import_module('interplay_fgsm.manifest')\n"
        "import interplay_fgsm\n"
        "assert 'torch' not in sys.modules, 'importing the manifest imported torch'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_cli_lists_fgsm():
    result = subprocess.run(
        [sys.executable, "-m", "interplay", "plugins", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    entries = [p for p in listing["plugins"] if p["name"] == "fgsm"]
    assert len(entries) == 1, listing
    entry = entries[0]
    assert entry["distribution"] == "interplay-fgsm"
    assert entry["kind"] == "attack" and list(entry["risks"]) == ["S1"]
    assert (entry["input"], entry["output"]) == ("TrainedModel", "AdversarialExamples")
    assert not [e for e in listing["errors"] if e.get("distribution") == "interplay-fgsm"]


# -- (5) bad input ------------------------------------------------------------------------------
def test_missing_data_raises(digits):
    _, model, context = digits
    with pytest.raises(ArtifactError, match="data="):
        fgsm().run(model, context=context)


@pytest.mark.parametrize(
    "params", [{"eps": -0.1}, {"clip_min": 1.0, "clip_max": 0.0}, {"batch_size": 0}, {"eps": float("nan")}]
)
def test_invalid_params_are_rejected(params):
    with pytest.raises(ConfigError):
        fgsm(**params)
