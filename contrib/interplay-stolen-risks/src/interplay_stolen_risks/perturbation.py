"""Posterior-perturbation defenses against model stealing: Prediction Poisoning and Adaptive Misinformation.

"Stolen Risks of Models with Security Properties" (Qin et al., CCS 2023, section 3.3) evaluates two
perturbation-based defenses on natural and robust targets; both answer each query with a convex
combination of the target's posterior ``F(x)`` and a misleading distribution:

- **Prediction Poisoning** (PP; Orekondy et al., ICLR 2020, "MAD"): ``F'(x) = (1 - alpha) F(x) +
  alpha eta``, ``eta`` the one-hot extreme point that maximises the angular deviation between the
  gradients ``G^T F(x)`` and ``G^T eta`` of a surrogate of the attacker's model, ``G`` the Jacobian of
  the surrogate's log-likelihood with respect to its parameters;
- **Adaptive Misinformation** (AM; Kariyappa & Qureshi, CVPR 2020): ``F'(x) = (1 - a) F(x) + a F^(x)``,
  ``F^`` a misinformation model trained with the reverse cross-entropy ``-log(1 - F^(x)_y)``, and
  ``a = 1 / (1 + exp(nu (max_i F(x)_i - tau)))`` large only for low-confidence (out-of-distribution) queries.

The paper's parameter rule picks ``alpha`` and ``tau`` as "the largest degree of perturbation with at
most 1 % decrease in model accuracy", walking up from 0.01 in steps of 0.01. Both defenses take a
black-box target and return a :class:`PerturbedAccess`, so only black-box attacks reach them.
``docs/defenses.md`` gives the sources of the defaults and the deviations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

import torch
from pydantic import Field, PrivateAttr

from interplay import Defense, Params, RunContext
from interplay.artifacts import LabeledData, QueryAccess, TaskData
from interplay.errors import ArtifactError

from ._perturb import (
    Objective,
    ParameterSet,
    adaptive_weight,
    extreme_point,
    grid,
    largest_within_budget,
    log_likelihood_jacobian,
    reverse_cross_entropy,
)

__all__ = ["AdaptiveMisinformation", "PerturbedAccess", "PredictionPoisoning"]

Posteriors = Callable[[torch.Tensor], torch.Tensor]
Calibration = Literal["defender", "test"]
#: Kariyappa & Qureshi's code: ``h = 1 / (1 + exp(-10000 (delta - max_prob)))`` (``admis/utils/defense.py``).
AM_NU = 10_000.0


class PerturbedAccess(QueryAccess):
    """Black-box access whose answers a defense perturbed; the undefended answers are kept for evaluation.

    :meth:`undefended_query` is evaluation ground truth, like
    :attr:`~interplay.artifacts.ModelAccess.train_indices`: metrics compare the defended answers
    with it; an attack must never call it.
    """

    _undefended: Posteriors | None = PrivateAttr(default=None)

    @classmethod
    def perturbing(cls, target: QueryAccess, posteriors: Posteriors, *, info: dict[str, Any]) -> PerturbedAccess:
        """Answer with ``posteriors`` in front of ``target``, keeping ``target``'s facts and undefended reference.

        Args:
            target: The access being defended; when it is a :class:`PerturbedAccess` already, its own
                undefended reference stays the reference (the model before any perturbation).
            posteriors: The defended posterior function.
            info: Facts the defense adds to ``target.info``.
        """
        access = cls(
            num_classes=target.num_classes,
            input_shape=target.input_shape,
            info={**target.info, **info},
            train_indices=target.train_indices,
        )
        access._posteriors = posteriors
        if isinstance(target, PerturbedAccess) and target._undefended is not None:
            access._undefended = target._undefended
        else:
            access._undefended = _answers(target)
        return access

    def undefended_query(self, x: torch.Tensor) -> torch.Tensor:
        """Posteriors of the model before the defense (evaluation ground truth; never for attacks).

        Raises:
            ArtifactError: When the access has no undefended reference.
        """
        if self._undefended is None:
            raise ArtifactError("this PerturbedAccess has no undefended reference")
        self.check_input(x)
        return self._undefended(x)


def _answers(target: QueryAccess) -> Posteriors:
    def ask(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            answers: torch.Tensor = target.query(x).detach().to(torch.float32)
        return answers

    return ask


Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class _PerturbationParams(Params):
    """Parameters of the paper's rule shared by both defenses.

    Attributes:
        calibration: Labelled rows on which the accuracy decrease is measured: ``defender``, the
            defender's own training rows (``data.defender_train``; the test split stays for
            evaluation); ``test``, the test split.
        max_accuracy_drop: The walk up the grid stops at the first value that loses this much
            accuracy (the paper's 1 %); the value before it is kept.
        grid_step: Step of the grid, which starts at the step (the paper's 0.01).
    """

    calibration: Calibration = "defender"
    max_accuracy_drop: float = Field(default=0.01, gt=0, le=1)
    grid_step: float = Field(default=0.01, gt=0, le=1)


def _calibration_rows(defense: Defense, data: TaskData | None, which: Calibration) -> LabeledData:
    if data is None:
        raise ArtifactError(f"defense {defense.name!r} needs data= (a TaskData) to measure the accuracy decrease")
    rows = data.defender_train if which == "defender" else data.test
    if len(rows) == 0:
        raise ArtifactError(f"defense {defense.name!r}: no {which} rows to measure the accuracy decrease on")
    return rows


def _correct(posteriors: torch.Tensor, y: torch.Tensor) -> int:
    return int((posteriors.argmax(dim=1).cpu() == y.cpu()).sum())


class _Perturbation(Defense):
    __abstract__ = True
    risks = ("S3",)
    Input = QueryAccess
    Output = QueryAccess

    def _calibrate(
        self,
        knob: str,
        value: float | str,
        data: TaskData | None,
        prepare: Callable[[torch.Tensor], torch.Tensor],
        mix: Callable[[torch.Tensor, float], torch.Tensor],
    ) -> tuple[float, dict[str, Any]]:
        """Fix the perturbation strength: ``value`` itself, or the paper's rule when it is ``"auto"``.

        ``prepare(x)`` returns ``[F(x), other]`` side by side ``(N, 2K)``: what does not depend on
        the strength, computed once per row; ``mix(prepared, v)`` the defended posteriors for strength
        ``v``. A fixed ``value`` without ``data`` records no accuracies.
        """
        p: _PerturbationParams = self.params  # type: ignore[assignment]
        facts: dict[str, Any] = {f"{knob}_auto": value == "auto"}
        if value != "auto" and data is None:
            return float(value), facts
        rows = _calibration_rows(self, data, p.calibration)
        prepared = prepare(rows.x)
        baseline = _correct(prepared.chunk(2, dim=1)[0], rows.y)
        if value == "auto":
            chosen, after = largest_within_budget(
                grid(p.grid_step),
                lambda v: _correct(mix(prepared, v), rows.y),
                baseline=baseline,
                n=len(rows),
                budget=p.max_accuracy_drop,
            )
        else:
            chosen = float(value)
            after = _correct(mix(prepared, chosen), rows.y)
        facts.update(
            {
                "perturbation_calibration": p.calibration,
                "perturbation_calibration_rows": len(rows),
                "perturbation_accuracy_before": baseline / len(rows),
                "perturbation_accuracy_after": after / len(rows),
            }
        )
        return chosen, facts


class PredictionPoisoning(_Perturbation):
    """Prediction Poisoning (MAD, Orekondy et al., ICLR 2020) as Stolen Risks applies it (section 3.3).

    Each answer is ``F'(x) = (1 - alpha) F(x) + alpha eta``. The defender's surrogate of the
    attacker's model is the scenario's architecture, randomly initialised (MAD's default proxy);
    ``G`` is the Jacobian of its log-posteriors with respect to its output layer's weights (MAD's
    ``max_grad_layer=None``; ``parameters="all"`` takes every parameter), computed per sample with
    ``torch.func``; ``eta`` is the one-hot ``e_k`` that maximises the angle between ``G^T F(x)`` and
    ``G^T e_k``. ``alpha="auto"`` applies the paper's 1 % rule on the calibration rows.

    Examples:
        With ``target`` a model, ``task`` its task and ``context`` naming the scenario's architecture::

            defended = PredictionPoisoning().apply(target, data=task, context=context)
            defended.info["pp_alpha"], defended.info["perturbation_accuracy_after"]
    """

    name = "prediction_poisoning"
    summary = "posteriors mixed with the one-hot point of largest gradient deviation (MAD; Stolen Risks)"

    class Params(_PerturbationParams):
        """Hyper-parameters of :class:`PredictionPoisoning` (the rule's on :class:`_PerturbationParams`).

        Attributes:
            alpha: Weight of ``eta``: a number in ``[0, 1]``, or ``"auto"`` (the paper's rule).
            objective: ``angle`` (the papers' angular deviation) or ``surrogate`` (MAD code's default,
                ``||G^T (eta - y)||^2``).
            parameters: ``last``: the surrogate's output-layer weights (MAD's default); ``all``.
            architecture: Model factory of the surrogate; ``None`` uses the scenario's.
            architecture_params: Parameters of that factory.
        """

        alpha: Fraction | Literal["auto"] = "auto"
        objective: Objective = "angle"
        parameters: ParameterSet = "last"
        architecture: str | None = None
        architecture_params: dict[str, Any] = Field(default_factory=dict)

    params: PredictionPoisoning.Params

    def apply(
        self, target: QueryAccess, /, *, data: TaskData | None = None, context: RunContext | None = None
    ) -> PerturbedAccess:
        """Put the poisoning interface in front of ``target``.

        Args:
            target: Black-box access to the model (a trained model is narrowed to it).
            data: The task; needed for ``alpha="auto"`` (the calibration rows).
            context: Seed, device and the scenario's architecture (the surrogate's).

        Returns:
            The defended access; ``info`` adds ``perturbation``, ``pp_alpha``, ``pp_alpha_auto`` and the
            calibration's accuracies before and after.

        Raises:
            ConfigError: When no model factory is available for the surrogate.
            ArtifactError: When ``alpha="auto"`` and ``data`` is missing.
        """
        context = context if context is not None else RunContext()
        p = self.params
        factory = context.model_factory(p.architecture, p.architecture_params, path=f"{self.name}.params.architecture")
        seed = context.derive_seed(self.name, "surrogate")
        surrogate = context.build_model(target.input_shape, target.num_classes, seed=seed, factory=factory).eval()
        for parameter in surrogate.parameters():
            parameter.requires_grad_(False)
        ask = _answers(target)

        def prepare(x: torch.Tensor) -> torch.Tensor:
            """``[F(x), eta]`` side by side ``(N, 2K)``."""
            y = ask(x)
            g = log_likelihood_jacobian(surrogate, x.to(context.device), parameters=p.parameters)
            return torch.cat([y, extreme_point(g, y.to(g.device), objective=p.objective).to(y.device)], dim=1)

        def mix(prepared: torch.Tensor, alpha: float) -> torch.Tensor:
            y, eta = prepared.chunk(2, dim=1)
            return (1.0 - alpha) * y + alpha * eta

        alpha, facts = self._calibrate("pp_alpha", p.alpha, data, prepare, mix)

        def poisoned(x: torch.Tensor) -> torch.Tensor:
            return mix(prepare(x), alpha)

        info = {"perturbation": self.name, "pp_alpha": alpha, "pp_objective": p.objective, **facts}
        return PerturbedAccess.perturbing(target, poisoned, info=info)


class AdaptiveMisinformation(_Perturbation):
    """Adaptive Misinformation (Kariyappa & Qureshi, CVPR 2020) as Stolen Risks applies it (section 3.3).

    A misinformation model ``F^`` of the scenario's architecture is trained on the defender's rows
    with the reverse cross-entropy ``-log(1 - F^(x)_y)`` (it learns to put little mass on the true
    class). Each answer is ``(1 - a) F(x) + a F^(x)`` with ``a = 1 / (1 + exp(nu (max_i F(x)_i - tau)))``:
    confident (in-distribution) queries keep their answer, unconfident ones get misinformation.
    ``nu`` is the authors' code's 10,000; ``tau="auto"`` applies the paper's 1 % rule.

    Examples:
        With ``target`` a model, ``task`` its task and ``context`` naming the scenario's architecture::

            defended = AdaptiveMisinformation().apply(target, data=task, context=context)
            defended.info["am_tau"]
    """

    name = "adaptive_misinformation"
    summary = "low-confidence answers mixed with a reverse-trained misinformation model (Kariyappa & Qureshi)"
    conformance_params = {"epochs": 2}

    class Params(_PerturbationParams):
        """Hyper-parameters of :class:`AdaptiveMisinformation` (the rule's on :class:`_PerturbationParams`).

        Attributes:
            tau: Confidence threshold: a number in ``[0, 1]``, or ``"auto"`` (the paper's rule).
            nu: Steepness of the mixing weight (the authors' code: 10,000, nearly a step).
            architecture: Model factory of ``F^``; ``None`` uses the scenario's.
            architecture_params: Parameters of that factory.
            epochs: Training epochs of ``F^``; ``None`` uses the scenario recipe's.
            lr: Its learning rate; ``None`` uses the scenario recipe's.
            batch_size: Its mini-batch size; ``None`` uses the scenario recipe's.
        """

        tau: Fraction | Literal["auto"] = "auto"
        nu: float = Field(default=AM_NU, gt=0, allow_inf_nan=False)
        architecture: str | None = None
        architecture_params: dict[str, Any] = Field(default_factory=dict)
        epochs: int | None = Field(default=None, ge=1)
        lr: float | None = Field(default=None, gt=0)
        batch_size: int | None = Field(default=None, ge=1)

    params: AdaptiveMisinformation.Params

    def apply(
        self, target: QueryAccess, /, *, data: TaskData | None = None, context: RunContext | None = None
    ) -> PerturbedAccess:
        """Train ``F^`` on the defender's rows and put the misinformation interface in front of ``target``.

        Args:
            target: Black-box access to the model (a trained model is narrowed to it).
            data: The task: ``F^`` trains on ``data.defender_train``.
            context: Seed, device, the scenario's architecture and recipe (``F^``'s).

        Returns:
            The defended access; ``info`` adds ``perturbation``, ``am_tau``, ``am_nu``, ``am_tau_auto``
            and the calibration's accuracies before and after.

        Raises:
            ConfigError: When no model factory is available for ``F^``.
            ArtifactError: When ``data`` is missing or has no defender rows.
        """
        context = context if context is not None else RunContext()
        p = self.params
        factory = context.model_factory(p.architecture, p.architecture_params, path=f"{self.name}.params.architecture")
        rows = _calibration_rows(self, data, "defender")
        misinformation = context.train(
            rows,
            seed=context.derive_seed(self.name, "misinformation"),
            recipe=context.recipe.overridden_by(p),
            factory=factory,
            loss_fn=reverse_cross_entropy,
        )
        ask = _answers(target)

        def prepare(x: torch.Tensor) -> torch.Tensor:
            """``[F(x), F^(x)]`` side by side ``(N, 2K)``."""
            return torch.cat([ask(x), misinformation.query(x).to(torch.float32)], dim=1)

        def mix(prepared: torch.Tensor, tau: float) -> torch.Tensor:
            y, fake = prepared.chunk(2, dim=1)
            a = adaptive_weight(y.max(dim=1).values, tau=tau, nu=p.nu).to(y.dtype)[:, None]
            return (1.0 - a) * y + a * fake

        tau, facts = self._calibrate("am_tau", p.tau, data, prepare, mix)

        def misinformed(x: torch.Tensor) -> torch.Tensor:
            return mix(prepare(x), tau)

        info = {"perturbation": self.name, "am_tau": tau, "am_nu": p.nu, **facts}
        return PerturbedAccess.perturbing(target, misinformed, info=info)
