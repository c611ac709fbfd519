"""Measurements behind Stolen Risks' analyses of model stealing: ID/OOD agreement and angular deviation.

Both take the model as its black-box interface (``attack = none`` cells):

- :class:`IdOodAgreement` (section 3.3, Table 3): how often a defended model's predictions agree
  with its undefended counterpart's on in-distribution rows (the test split) and on
  out-of-distribution rows (uniform random queries, like the data-free attacks'), and the gap
  between the two. A selective defense keeps ID answers and changes OOD ones: a large gap;
- :class:`AngularDeviation` (section 3.2, "Insights and Analysis", Figure 5): the angles between
  the parameter gradients a freshly initialised substitute receives from benign test rows and
  from JBA(P)'s synthesised rows, both labelled by the target. Small angles mean the synthesised
  queries teach the substitute what benign rows would: the target is easier to steal.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import Field

from interplay import Metric, MetricValue, Params, RunContext
from interplay.artifacts import QueryAccess, TaskData
from interplay.errors import ArtifactError
from interplay.training import fit

from ._substitute import sample_queries, substitute_loss
from .datasets import partial_seed_indices
from .jba import ifgsm, loss_gradient
from .perturbation import PerturbedAccess

__all__ = ["AngularDeviation", "IdOodAgreement", "gradient_angles"]

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def _test_split(metric: Metric, data: TaskData | None) -> Any:
    if data is None:
        raise ArtifactError(f"metric {metric.name!r} needs data= (a TaskData; it uses its test split)")
    if len(data.test) == 0:
        raise ArtifactError(f"metric {metric.name!r}: the test split is empty")
    return data.test


class IdOodAgreement(Metric):
    """Agreement of defended and undefended predictions on ID and OOD rows, and their gap (Stolen Risks, Table 3).

    ``agreement_id`` is the share of test rows on which the defended arg-max equals the undefended
    one, ``agreement_ood`` the same on as many uniform random inputs in ``[-radius, radius]`` per
    coordinate, and ``gap = agreement_id - agreement_ood``. The undefended reference is a
    :class:`~interplay_stolen_risks.perturbation.PerturbedAccess`'s ground truth; a model without
    one is compared with itself (1, 1, 0).

    Its values point different ways (a higher gap and a lower OOD agreement mean a stronger
    defense, a lower ID agreement a costlier one), so it is reported as a diagnostic: ``utility``,
    without a susceptibility verdict.
    """

    name = "id_ood_agreement"
    risks = ("S3",)
    Input = QueryAccess
    higher_is_riskier = False
    utility = True
    summary = "agreement of defended and undefended predictions on ID and OOD rows, and the gap (Stolen Risks)"

    class Params(Params):
        """Hyper-parameters of :class:`IdOodAgreement`.

        Attributes:
            radius: Half-width of the box of the OOD queries (the data-free attacks' ``[-1, 1]``).
        """

        radius: float = Field(default=1.0, gt=0, allow_inf_nan=False)

    params: IdOodAgreement.Params

    def compute(
        self,
        output: QueryAccess,
        /,
        *,
        target: Any = None,
        data: TaskData | None = None,
        context: RunContext | None = None,
    ) -> list[MetricValue]:
        """``id_ood_agreement[id]``, ``[ood]`` and ``[gap]``.

        Args:
            output: The model's black-box interface (defended or not).
            target: Unused.
            data: The task; its test split gives the ID rows and the number of OOD rows.
            context: Seed of the OOD queries.

        Raises:
            ArtifactError: When ``data`` is missing or its test split is empty.
        """
        context = context if context is not None else RunContext()
        test = _test_split(self, data)
        generator = context.generator(self.name, "ood")
        ood = sample_queries(
            len(test),
            output.input_shape,
            distribution="uniform",
            radius=self.params.radius,
            std=1.0,
            generator=generator,
        )

        def agreement(x: torch.Tensor) -> float:
            if not isinstance(output, PerturbedAccess):
                return 1.0  # no undefended reference: the model is its own
            defended = output.query(x).argmax(dim=1).cpu()
            reference = output.undefended_query(x).argmax(dim=1).cpu()
            return float((defended == reference).double().mean())

        a_id, a_ood = agreement(test.x), agreement(ood)
        details = {"n": len(test), "radius": self.params.radius, "defended": isinstance(output, PerturbedAccess)}
        return [
            MetricValue(name=f"{self.name}[{key}]", value=value, higher_is_riskier=False, risk="S3", details=details)
            for key, value in (("id", a_id), ("ood", a_ood), ("gap", a_id - a_ood))
        ]


def gradient_angles(benign: torch.Tensor, synthesised: torch.Tensor) -> torch.Tensor:
    """Pairwise angles in degrees between two sets of gradient directions ``(N, D)`` and ``(M, D)`` -> ``(N, M)``."""
    a = benign.double() / benign.double().norm(dim=1, keepdim=True).clamp_min(1e-30)
    b = synthesised.double() / synthesised.double().norm(dim=1, keepdim=True).clamp_min(1e-30)
    return torch.rad2deg(torch.arccos((a @ b.T).clamp(-1.0, 1.0)))


class AngularDeviation(Metric):
    """Angular deviation between gradients from benign and synthesised queries (Stolen Risks, Figure 5).

    1. Benign rows: ``n`` rows of the test split at random. Synthesised rows: JBA(P)'s augmentation
       of ``n`` of the defender's rows: a substitute trained on the seed rows and the target's answers,
       then one I-FGSM step set (``eps``, ``steps``) away from the target's label
       (:func:`~interplay_stolen_risks.jba.ifgsm`). Both sets are labelled by the target.
    2. A substitute of the scenario's architecture, randomly initialised, is trained with batch size 1
       (SGD, MAD's ``0.1 / 64``) on the ``2 n`` labelled rows in random order; before each step the
       gradient of the soft cross-entropy on the newly added row, with respect to all parameters,
       is recorded (``u = G^T y``, negated).
    3. The ``n x n`` angles between benign and synthesised gradient directions are reported: their
       mean (the value, degrees) and quantiles. Lower means the synthesised queries carry what
       benign ones would: more stealable.
    """

    name = "angular_deviation"
    risks = ("S3",)
    Input = QueryAccess
    higher_is_riskier = False
    summary = "angle between substitute gradients from benign and JBA(P)-synthesised queries (Stolen Risks)"
    conformance_params = {"n": 8, "epochs": 2}

    class Params(Params):
        """Hyper-parameters of :class:`AngularDeviation`.

        Attributes:
            n: Benign rows and synthesised rows, each (the paper's Figure 5a: 50).
            eps: I-FGSM radius of the augmentation (``jba``'s default).
            steps: I-FGSM steps (the paper's 5).
            epochs: Training epochs of the augmentation's seed substitute (``jba``'s default).
            batch_size: Its mini-batch size (``jba``'s default).
            lr: Learning rate of the batch-size-1 substitute (MAD's adversary: SGD, ``0.1 / 64``).
            architecture: Model factory of both substitutes; ``None`` uses the scenario's.
            architecture_params: Parameters of that factory.
        """

        n: int = Field(default=50, ge=1)
        eps: float = Field(default=0.1, gt=0, allow_inf_nan=False)
        steps: int = Field(default=5, ge=1)
        epochs: int = Field(default=100, ge=1)
        batch_size: int = Field(default=32, ge=1)
        lr: float = Field(default=0.1 / 64, gt=0, allow_inf_nan=False)
        architecture: str | None = None
        architecture_params: dict[str, Any] = Field(default_factory=dict)

    params: AngularDeviation.Params

    def compute(
        self,
        output: QueryAccess,
        /,
        *,
        target: Any = None,
        data: TaskData | None = None,
        context: RunContext | None = None,
    ) -> MetricValue:
        """Mean pairwise angle (degrees) between benign and synthesised gradient directions.

        Args:
            output: The model's black-box interface (defended or not).
            target: Unused.
            data: The partitioned task: benign rows from its test split, seed rows from its defender rows.
            context: Seed, device and the scenario's architecture and recipe.

        Raises:
            ConfigError: When no model factory is available.
            ArtifactError: When ``data`` is missing, has no partition, or too few test or defender rows.
        """
        context = context if context is not None else RunContext()
        p = self.params
        factory = context.model_factory(p.architecture, p.architecture_params, path=f"{self.name}.params.architecture")
        test = _test_split(self, data)
        assert data is not None
        if len(test) < p.n:
            raise ArtifactError(f"metric {self.name!r}: {len(test)} test rows, fewer than n = {p.n}")
        benign = test.x[torch.randperm(len(test), generator=context.generator(self.name, "benign"))[: p.n]]
        seed_rows = partial_seed_indices(data, size=p.n, seed=context.derive_seed(self.name, "seed_set"))
        assert data.partition is not None
        seed_x = data.splits[data.partition.split].x[seed_rows].to(torch.float32)

        def ask(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                answers: torch.Tensor = output.query(x).detach().to(device="cpu", dtype=torch.float32)
            return answers

        seed_y = ask(seed_x)
        shape, classes = output.input_shape, output.num_classes
        recipe = context.recipe.overridden(epochs=p.epochs, batch_size=p.batch_size)
        module = context.build_model(
            shape, classes, seed=context.derive_seed(self.name, "jba", "init"), factory=factory
        )
        fit(
            module,
            seed_x,
            seed_y,
            recipe,
            seed=context.derive_seed(self.name, "jba"),
            device=context.device,
            loss_fn=substitute_loss("kl"),
        )
        labels = seed_y.argmax(dim=1).to(context.device)
        synthesised = ifgsm(loss_gradient(module), seed_x.to(context.device), labels, eps=p.eps, steps=p.steps).cpu()

        x = torch.cat([benign.to(torch.float32), synthesised])
        y = ask(x)
        order = torch.randperm(len(x), generator=context.generator(self.name, "order"))
        gradients = self._online_gradients(x[order], y[order], context, factory)[torch.argsort(order)]
        angles = gradient_angles(gradients[: p.n], gradients[p.n :])
        quantiles = torch.quantile(angles.flatten(), torch.tensor(QUANTILES, dtype=angles.dtype)).tolist()
        return MetricValue(
            name=self.name,
            value=float(angles.mean()),
            higher_is_riskier=False,
            risk="S3",
            details={
                "n": p.n,
                "pairs": angles.numel(),
                "quantiles": {str(q): v for q, v in zip(QUANTILES, quantiles, strict=True)},
                "benign_self_angle": float(_mean_off_diagonal(gradient_angles(gradients[: p.n], gradients[: p.n]))),
            },
        )

    def _online_gradients(self, x: torch.Tensor, y: torch.Tensor, context: RunContext, factory: Any) -> torch.Tensor:
        """Train a fresh substitute with batch size 1 on ``(x, y)`` in order; each row's gradient before its step."""
        module = context.build_model(
            tuple(x.shape[1:]),
            y.shape[1],
            seed=context.derive_seed(self.name, "online", "init"),
            factory=factory,
        )
        module.train()
        parameters = [q for q in module.parameters() if q.requires_grad]
        optimizer = torch.optim.SGD(parameters, lr=self.params.lr)
        loss_fn = substitute_loss("kl")
        rows = []
        for xi, yi in zip(x.to(context.device), y.to(context.device), strict=True):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(module, xi[None], yi[None])
            grads = torch.autograd.grad(loss, parameters)
            rows.append(torch.cat([g.flatten() for g in grads]).detach().cpu())
            for q, g in zip(parameters, grads, strict=True):
                q.grad = g
            optimizer.step()
        return torch.stack(rows)


def _mean_off_diagonal(angles: torch.Tensor) -> float:
    n = angles.shape[0]
    if n < 2:
        return math.nan if n == 0 else 0.0
    mask = ~torch.eye(n, dtype=torch.bool)
    return float(angles[mask].mean())
