"""Tests for the ``dp_sgd`` defense (PD1): DP-SGD through Opacus.

The membership tests use an overfit target: 63 digits (5 % of the training split) learnt by a wide
one-hidden-layer MLP for 200 full-batch epochs. The membership signal is the per-example loss
(Yeom et al.'s attack), scored by the ROC AUC of members against the 540 test rows.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.nn import functional as F

from interplay.artifacts import Partition, TaskData, TrainedModel, fingerprint
from interplay.context import RunContext
from interplay.errors import ArtifactError, ConfigError
from interplay.modules import Dataset, ModelFactory
from interplay.plugins.privacy.dp_sgd import DEFAULT_NOISE_MULTIPLIER, DPSGD
from interplay.recipe import TrainingRecipe
from interplay.registry import get_registry
from interplay.testing import parametrize_with_checks
from interplay.testing.synthetic import synthetic_task, tiny_context

# The private runs use their own short recipe (the target's 200 full-batch epochs would be slow under DP).
PRIVATE = {"epochs": 30, "batch_size": 32, "lr": 1e-2}
# Measured (seeds 0 and 1): non-private target loss-attack AUC 0.78, LiRA AUC 0.87 (8 shadows), test accuracy
# 0.87; DP-SGD with sigma 4 (epsilon 4.4 by PRV, 30 epochs, sampling rate 1/2): loss-attack AUC 0.61, LiRA
# AUC 0.63, accuracy 0.32-0.36; sigma 0.1 for 60 epochs at lr 3e-3 (epsilon 5802): accuracy 0.84-0.85.
SMALL_EPSILON_SIGMA = 4.0


def _registry_create(name: str, kind: str, **params: Any) -> Any:
    return get_registry().create(name, kind, **params)


@pytest.fixture(scope="module")
def task() -> TaskData:
    digits = _registry_create("digits", "dataset")
    assert isinstance(digits, Dataset)
    return digits.load().partitioned(defender=0.05, adversary=0.5, seed=0)


@pytest.fixture(scope="module")
def context() -> RunContext:
    factory = _registry_create("mlp", "model", hidden_sizes=(1024,))
    assert isinstance(factory, ModelFactory)
    return RunContext(seed=0, model=factory, recipe=TrainingRecipe(epochs=200, batch_size=128))


@pytest.fixture(scope="module")
def target(task: TaskData, context: RunContext) -> TrainedModel:
    assert task.partition is not None
    return context.train(task.defender_train, train_indices=task.partition.defender)


@pytest.fixture(scope="module")
def private(task: TaskData, context: RunContext) -> TrainedModel:
    return DPSGD(noise_multiplier=SMALL_EPSILON_SIGMA, **PRIVATE).apply(task, context=context)


def _loss_auc(model: TrainedModel, task: TaskData) -> float:
    members, outsiders = task.defender_train, task.test
    x, y = torch.cat([members.x, outsiders.x]), torch.cat([members.y, outsiders.y])
    loss = F.cross_entropy(model.logits(x), y, reduction="none")
    is_member = torch.cat([torch.ones(len(members)), torch.zeros(len(outsiders))])
    return float(roc_auc_score(is_member.numpy(), (-loss).numpy()))


def _accuracy(model: TrainedModel, task: TaskData) -> float:
    return float((model.predict(task.test.x) == task.test.y).float().mean())


# ----------------------------------------------------------------------------------------- privacy


def test_small_epsilon_lowers_membership_auc(task: TaskData, target: TrainedModel, private: TrainedModel) -> None:
    before, after = _loss_auc(target, task), _loss_auc(private, task)
    print(f"loss-attack AUC: target {before:.3f}, DP-SGD (epsilon {private.info['dp_epsilon']:.2f}) {after:.3f}")
    assert private.info["dp_epsilon"] < 5  # a small budget (4.4)
    assert before >= 0.7, "the target should be overfit enough for the test to mean something"
    assert after <= 0.66 and before - after >= 0.1


def test_lira_auc_drops_under_dp_sgd(
    task: TaskData, context: RunContext, target: TrainedModel, private: TrainedModel
) -> None:
    lira = pytest.importorskip("interplay.plugins.privacy.lira")
    assert task.partition is not None
    # A small adversary pool (the 126 candidates and 64 own rows) keeps the 8 shadow models cheap;
    # both targets share one set of shadows through the context's memo.
    small = task.model_copy(
        update={"partition": Partition(defender=task.partition.defender, adversary=task.partition.adversary[:64])}
    )
    attack = lira.LiRA(n_shadows=8, fix_variance=True)  # the reference's global variance, for few shadows
    aucs = []
    for model in (target, private):
        scores = attack.run(model, data=small, context=context)
        aucs.append(float(roc_auc_score(scores.is_member.numpy(), scores.scores.numpy())))
    epsilon = private.info["dp_epsilon"]
    print(f"LiRA AUC (8 shadows): target {aucs[0]:.3f}, DP-SGD (epsilon {epsilon:.2f}) {aucs[1]:.3f}")
    assert aucs[0] >= 0.8  # measured 0.867
    assert aucs[1] <= 0.7 and aucs[0] - aucs[1] >= 0.15  # measured 0.633


def test_recorded_epsilon_is_what_opacus_accounts(private: TrainedModel, task: TaskData) -> None:
    from opacus.accountants import PRVAccountant

    info = private.info
    assert info["dp_accountant"] == "prv" and info["dp_delta"] == 1e-5 and info["dp_max_grad_norm"] == 1.0
    assert info["dp_noise_multiplier"] == SMALL_EPSILON_SIGMA
    n = len(task.defender_train)  # 63 rows, expected batch 32: two Poisson-sampled steps per epoch
    assert info["dp_sample_rate"] == pytest.approx(1 / -(-n // PRIVATE["batch_size"]))
    assert info["dp_steps"] == PRIVATE["epochs"] * 2
    accountant = PRVAccountant()
    accountant.history = [(SMALL_EPSILON_SIGMA, info["dp_sample_rate"], info["dp_steps"])]
    assert info["dp_epsilon"] == pytest.approx(accountant.get_epsilon(delta=1e-5), rel=1e-9)


@pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha")  # from the test's own get_noise_multiplier
def test_target_epsilon_sets_the_noise_opacus_computes(task: TaskData, context: RunContext) -> None:
    from opacus.accountants import RDPAccountant
    from opacus.accountants.utils import get_noise_multiplier

    model = DPSGD(target_epsilon=2.0, accountant="rdp", epochs=3, batch_size=16).apply(task, context=context)
    info = model.info
    rate = info["dp_sample_rate"]
    assert rate == pytest.approx(1 / 4)  # 63 rows, expected batch 16
    expected_sigma = get_noise_multiplier(
        target_epsilon=2.0, target_delta=1e-5, sample_rate=rate, epochs=3, accountant="rdp"
    )
    assert info["dp_noise_multiplier"] == pytest.approx(expected_sigma)
    accountant = RDPAccountant()
    accountant.history = [(expected_sigma, rate, info["dp_steps"])]
    assert info["dp_steps"] == 12
    assert info["dp_epsilon"] == pytest.approx(accountant.get_epsilon(delta=1e-5))
    assert info["dp_target_epsilon"] == 2.0
    assert 1.9 <= info["dp_epsilon"] <= 2.0 + 1e-6  # Opacus's search stops within 0.01 below the target


# ----------------------------------------------------------------------------------------- utility


def test_large_epsilon_keeps_accuracy(task: TaskData, context: RunContext, target: TrainedModel) -> None:
    # RDP: Opacus's PRV accountant takes minutes for noise this small.
    defense = DPSGD(noise_multiplier=0.1, accountant="rdp", epochs=60, batch_size=32, lr=3e-3)
    model = defense.apply(task, context=context)
    standard, private = _accuracy(target, task), _accuracy(model, task)
    print(f"test accuracy: non-private {standard:.3f}, DP-SGD (epsilon {model.info['dp_epsilon']:.0f}) {private:.3f}")
    assert model.info["dp_epsilon"] > 1000
    assert private >= standard - 0.06


def test_small_epsilon_costs_accuracy(task: TaskData, target: TrainedModel, private: TrainedModel) -> None:
    assert _accuracy(private, task) < _accuracy(target, task) - 0.2  # the price of epsilon 4.4 on 63 rows


# ----------------------------------------------------------------------------------------- the model


def _assert_plain(module: nn.Module) -> None:
    assert "opacus" not in type(module).__module__
    for sub in module.modules():
        assert not sub._forward_hooks and not sub._forward_pre_hooks and not sub._backward_hooks
    fresh = set(vars(nn.Parameter(torch.zeros(1))))
    for name, parameter in module.named_parameters():
        assert set(vars(parameter)) == fresh, f"{name} keeps Opacus state: {set(vars(parameter)) - fresh}"
        assert parameter.grad is None
    assert not module.training


def test_returns_a_plain_module_trained_on_the_defender_rows(task: TaskData, private: TrainedModel) -> None:
    assert task.partition is not None
    _assert_plain(private.module)
    assert torch.equal(private.train_indices, task.partition.defender)
    assert private.architecture == "mlp" and private.architecture_params["hidden_sizes"] == (1024,)
    assert private.recipe is not None and private.recipe.epochs == PRIVATE["epochs"]
    assert private.info["dp_fixed_modules"] == 0
    x = task.test.x[:5]
    logits = private.module(x)  # usable as any module: gradients flow, no per-example hooks
    logits.sum().backward()
    assert all(p.grad is not None for p in private.module.parameters())
    private.module.zero_grad(set_to_none=True)


def test_batch_norm_is_replaced_and_the_model_trains(task: TaskData) -> None:
    factory = _registry_create("mlp", "model", hidden_sizes=(128, 128), batch_norm=True)
    context = RunContext(seed=0, model=factory, recipe=TrainingRecipe(epochs=40, batch_size=32, lr=1e-2))
    model = DPSGD(noise_multiplier=0.3, accountant="rdp").apply(task, context=context)
    kinds = {type(m) for m in model.module.modules()}
    assert nn.GroupNorm in kinds and not any(issubclass(k, nn.modules.batchnorm._BatchNorm) for k in kinds)
    assert model.info["dp_fixed_modules"] == 2
    _assert_plain(model.module)
    accuracy = _accuracy(model, task)
    print(f"BatchNorm MLP after ModuleValidator.fix, DP-SGD: test accuracy {accuracy:.3f}")
    assert accuracy >= 0.5  # chance is 0.1


def test_same_seed_same_model(task: TaskData, context: RunContext) -> None:
    def run(seed: int) -> TrainedModel:
        fast = context.model_copy(update={"seed": seed, "recipe": TrainingRecipe(epochs=2, batch_size=16)})
        return DPSGD(accountant="rdp").apply(task, context=fast)

    first, again, other = run(0), run(0), run(1)
    assert fingerprint(first.module) == fingerprint(again.module)
    assert first.info == again.info
    assert fingerprint(first.module) != fingerprint(other.module)


def test_defaults_are_amulets() -> None:
    params = DPSGD().params
    assert params.noise_multiplier is None and params.target_epsilon is None
    assert (params.max_grad_norm, params.target_delta, params.accountant) == (1.0, 1e-5, "prv")
    task = synthetic_task("tabular")
    model = DPSGD().apply(task, context=tiny_context())
    assert model.info["dp_noise_multiplier"] == DEFAULT_NOISE_MULTIPLIER == 1.0
    assert "dp_target_epsilon" not in model.info


# ----------------------------------------------------------------------------------------- errors


def test_noise_and_budget_are_exclusive() -> None:
    with pytest.raises(ConfigError, match="not both"):
        DPSGD(noise_multiplier=1.0, target_epsilon=3.0)
    with pytest.raises(ConfigError, match=r"dp_sgd\.params\.target_epsilon"):
        DPSGD(target_epsilon=0.0)


def test_needs_a_model_factory_and_epochs() -> None:
    task = synthetic_task("tabular")
    with pytest.raises(ConfigError, match=r"context\.model"):
        DPSGD().apply(task, context=RunContext())
    with pytest.raises(ConfigError, match=r"recipe\.epochs"):
        DPSGD().apply(task, context=tiny_context(epochs=0))


def test_empty_defender_share_is_rejected() -> None:
    task = synthetic_task("tabular")
    assert task.partition is not None
    empty = task.model_copy(update={"partition": task.partition.model_copy(update={"defender": torch.zeros(0).long()})})
    with pytest.raises(ArtifactError, match="defender"):
        DPSGD().apply(empty, context=tiny_context())


@parametrize_with_checks(["dp_sgd"])  # type: ignore[untyped-decorator]
def test_conformance(plugin: Any, check: Any) -> None:
    check(plugin)
