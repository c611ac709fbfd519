"""Attribute inference (P2): predict a record's sensitive attributes from what the target reveals about it.

Two attacks, one per threat model; both train one attack model per sensitive attribute on the
adversary's own rows (``data.adversary``, which carry their sensitive attributes) and score the
records of an evaluation set:

- :class:`AttributeInference` (black-box): an MLP on the target's posteriors, the attack of
  Aalmoes, Duddu and Boutet ("On the Alignment of Group Fairness with Attribute Privacy", WISE
  2024, arXiv:2211.10209) as AMULET implements it (``amulet/attribute_inference/attacks/
  duddu_cikm_2022.py``, after ``vasishtduddu/AttInfExplanations``), with its G-mean decision threshold;
- :class:`WhiteBoxAttributeInference` (white-box): ML-Doctor's ``<AttrInf, M^W, D_aux^S>``
  (Liu et al., USENIX Security 2022, section 3.3; ``liuyugeng/ML-Doctor`` ``doctor/attrinf.py``):
  a linear classifier on the target's penultimate-layer embeddings.

The attack models of all attributes are trained together: their weights are stacked along a
leading "attribute" axis and one batched forward/backward pass serves all of them
(:func:`~._attack_mlps.train_stacked`). Each model still has its own initialisation, loss, Adam state and stopping
epoch, so, up to floating-point rounding, the result equals training them one at a time on the same
mini-batch order. See ``docs/privacy/attribute.md``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Literal

import torch
from pydantic import Field

from interplay.artifacts import AttributeGuesses, LabeledData, ModelAccess, QueryAccess, TaskData, TrainedModel
from interplay.context import RunContext
from interplay.errors import ArtifactError, ConfigError
from interplay.modules import Attack, Params

from ._attack_mlps import NetSpec, probability_of_one, train_stacked

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["AttributeInference", "WhiteBoxAttributeInference", "gmean_threshold"]

EvaluationSet = Literal["test", "members"]
DecisionRule = Literal["gmean", "argmax"]
QUERY_CHUNK = 1024
"""Inputs sent to the target per call (bounds memory for arbitrary posterior functions)."""


def gmean_threshold(scores: torch.Tensor, truth: torch.Tensor) -> float:
    """The ROC threshold that maximises the G-mean ``sqrt(TPR * (1 - FPR))``, as AMULET chooses it.

    The ROC curve is scikit-learn's ``roc_curve(truth, scores)`` (a record is predicted 1 when its
    score is at least the threshold); the first threshold with the largest G-mean wins, as
    ``numpy.argmax`` picks it in AMULET. When no threshold separates anything (every G-mean is 0,
    e.g. all scores equal) scikit-learn's first threshold is ``inf``; it is replaced by the
    smallest value above the largest score in the scores' dtype, which predicts 0 for every
    record just the same.

    Args:
        scores: Probability that the attribute is 1, float ``(N,)``.
        truth: The attribute, 0/1 ``(N,)``, both values present.

    Returns:
        A finite threshold.
    """
    import numpy as np
    from sklearn.metrics import roc_curve

    scores = scores.detach().cpu()
    fpr, tpr, thresholds = roc_curve(truth.detach().cpu().numpy(), scores.double().numpy())
    best = float(thresholds[int(np.argmax(np.sqrt(tpr * (1.0 - fpr))))])
    if math.isfinite(best):
        return best
    top = scores.max()
    return float(torch.nextafter(top, top.new_tensor(math.inf)))  # the next value in the scores' own precision


# -------------------------------------------------------------------------------------- shared attack logic


class _CommonParams(Params):
    """Parameters both attacks share (documented on each attack class).

    Attributes:
        attributes: Sensitive attributes to infer (one attack model each); ``None``: every one the data set has.
        decision: How the decision threshold is chosen: ``gmean`` (AMULET) or ``argmax`` (0.5, ML-Doctor).
        evaluate_on: The records scored: the ``test`` split (AMULET, ML-Doctor) or the target's training rows.
    """

    attributes: tuple[str, ...] | None = Field(default=None, min_length=1)
    decision: DecisionRule = "gmean"
    evaluate_on: EvaluationSet = "test"


class _AttributeAttack(Attack):
    """Shared run logic: attributes, evaluation rows, features, stacked attack models, thresholds."""

    __abstract__ = True
    risks = ("P2",)
    Output = AttributeGuesses
    knowledge = "shadow"
    params: _CommonParams

    def _features(self, target: ModelAccess, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _spec(self) -> NetSpec:
        raise NotImplementedError

    def run(
        self, target: ModelAccess, /, *, data: TaskData | None = None, context: RunContext | None = None
    ) -> AttributeGuesses:
        """Train the attack models on the adversary's rows and score the evaluation rows.

        Args:
            target: The model under attack.
            data: The task: its partition's adversary rows (with their sensitive attributes) train
                the attack models; ``evaluate_on`` chooses the scored rows.
            context: Seed and device.

        Returns:
            Per attribute: the probability that each evaluation record's attribute is 1, the truth,
            and the decision threshold.

        Raises:
            ArtifactError: When ``data`` is missing or unpartitioned, the data set has no sensitive
                attributes, an attribute is not binary or takes one value only on the adversary's
                rows, or the target returns malformed outputs.
            ConfigError: When ``attributes`` names an attribute the data set does not have.
        """
        context = context if context is not None else RunContext()
        adversary, evaluation = self._rows(target, data)
        names = self._attribute_names(adversary)
        z_train = torch.stack([self._binary(adversary, name, "the adversary's rows") for name in names])
        for name, values in zip(names, z_train, strict=True):
            if int(values.min()) == int(values.max()):
                raise ArtifactError(
                    f"attack {self.name!r}: attribute {name!r} takes the single value {int(values[0])} on the "
                    "adversary's rows, so no attack model can be trained for it"
                )
        truth = {name: self._binary(evaluation, name, "the evaluation rows") for name in names}
        spec = self._spec()
        f_train = self._features(target, adversary.x)
        f_eval = self._features(target, evaluation.x)
        layers = train_stacked(
            spec,
            f_train,
            z_train,
            init=[context.generator(self.name, "init", name) for name in names],
            order=context.generator(self.name, "order"),
            device=context.device,
        )
        p_train = probability_of_one(spec, layers, f_train).cpu()
        p_eval = probability_of_one(spec, layers, f_eval).cpu()
        threshold = {
            name: gmean_threshold(p_train[a], z_train[a]) if self.params.decision == "gmean" else 0.5
            for a, name in enumerate(names)
        }
        return AttributeGuesses(
            scores={name: p_eval[a].to(torch.float32) for a, name in enumerate(names)},
            truth=truth,
            threshold=threshold,
        )

    def _rows(self, target: ModelAccess, data: TaskData | None) -> tuple[LabeledData, LabeledData]:
        if data is None:
            raise ArtifactError(
                f"attack {self.name!r} needs data= (a TaskData whose partition gives the adversary's rows)"
            )
        if data.partition is None:
            raise ArtifactError(
                f"attack {self.name!r} needs a TaskData with a defender/adversary partition; "
                "call data.partitioned(...) first"
            )
        if not data.train.sensitive:
            raise ArtifactError(
                f"attack {self.name!r}: data set {data.name or '(unnamed)'!r} has no sensitive attributes "
                "(LabeledData.sensitive is empty), so there is nothing to infer"
            )
        adversary = data.adversary
        if len(adversary) == 0:
            raise ArtifactError(f"attack {self.name!r}: the adversary's share of the data is empty")
        if self.params.evaluate_on == "test":
            evaluation = data.test
        else:
            members = target.train_indices if target.train_indices is not None else data.partition.defender
            evaluation = data.splits[data.partition.split].subset(members)
        if len(evaluation) == 0:
            raise ArtifactError(f"attack {self.name!r}: no records to evaluate on ({self.params.evaluate_on})")
        return adversary, evaluation

    def _attribute_names(self, adversary: LabeledData) -> tuple[str, ...]:
        available = tuple(adversary.sensitive)
        requested = self.params.attributes
        if requested is None:
            return available
        unknown = [name for name in requested if name not in available]
        if unknown:
            raise ConfigError(
                f"unknown sensitive attribute(s) {unknown}; the data set has {list(available)}",
                path=f"{self.name}.params.attributes",
            )
        return tuple(dict.fromkeys(requested))

    def _binary(self, rows: LabeledData, name: str, where: str) -> torch.Tensor:
        values = rows.sensitive[name].detach().cpu().clone()  # the output shares no tensor with the task
        if values.numel() and not bool(((values == 0) | (values == 1)).all()):
            raise ArtifactError(
                f"attack {self.name!r}: sensitive attribute {name!r} must be binary (0/1) on {where}, "
                f"got values {sorted(set(values.tolist()))[:10]}"
            )
        return values

    def _checked(self, features: torch.Tensor, n: int, what: str) -> torch.Tensor:
        if features.ndim != 2 or features.shape[0] != n:
            raise ArtifactError(
                f"attack {self.name!r}: the target returned {what} of shape {tuple(features.shape)}, expected ({n}, K)"
            )
        features = features.detach().to(torch.float32)
        if not bool(torch.isfinite(features).all()):
            raise ArtifactError(f"attack {self.name!r}: the target returned {what} that are not finite")
        return features


def _chunked(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([fn(chunk) for chunk in torch.split(x, QUERY_CHUNK)])


class AttributeInference(_AttributeAttack):
    """Black-box attribute inference: an MLP on the target's posteriors (Aalmoes et al.; AMULET).

    The adversary queries the target with its own rows (``data.adversary``, disjoint from the
    target's training rows, whose sensitive attributes it knows) and trains, for each sensitive
    attribute, an MLP that maps the returned posterior vector to the attribute. The decision
    threshold is the one that maximises the G-mean ``sqrt(TPR * (1 - FPR))`` over the ROC curve of
    the attack model's scores on those same rows (Aalmoes et al.'s remedy for imbalanced
    attributes, AMULET's ``DudduCIKM2022.attack``). The attack then scores the evaluation records.

    The attack model and its training are AMULET's scikit-learn ``MLPClassifier(solver="adam",
    alpha=1e-3, hidden_layer_sizes=(64, 128, 32), max_iter=300)`` with scikit-learn's remaining
    defaults (ReLU, learning rate 1e-3, batches of ``min(200, N)``, reshuffled every epoch, stop
    after more than 10 epochs without a training-loss improvement of 1e-4, Glorot-uniform
    initialisation, one logistic output unit), re-implemented in torch so it runs on the
    context's device and draws its randomness from the context's seed.

    Deviations from AMULET, and why:

    - AMULET feeds the attack model ``target_model(x)``, i.e. logits; a black-box adversary only
      sees posteriors, so the features are the posteriors ``QueryAccess.query`` returns (the
      paper's "target model's outputs"; Aalmoes et al. attack soft labels, the probabilities).
    - A record is predicted 1 when its score is *at least* the threshold, the convention of the
      ROC curve the threshold was chosen on (AMULET writes ``>``; the two differ only on exact ties).

    Evaluation set (``evaluate_on``): ``test`` (default), the held-out test split, is what AMULET
    (``x_test``/``z_test``), Aalmoes et al.'s code and ML-Doctor ("Target Testing Dataset ... is also
    used to evaluate ... attribute inference") score; ``members`` scores the target's own training
    rows (``target.train_indices``, else the task's defender rows), the records whose attributes a
    training-data privacy adversary is after.

    Args:
        attributes: Sensitive attributes to infer (one attack model each); ``None``: every
            attribute the data set has (Census: race and sex).
        hidden_sizes: Hidden ReLU layers of the attack MLP (AMULET: 64, 128, 32).
        alpha: L2 penalty (AMULET: 1e-3).
        lr: Adam's learning rate (scikit-learn's default 1e-3).
        batch_size: Mini-batch size, clipped to the number of rows (scikit-learn's default 200).
        max_epochs: Epochs at most (AMULET's ``max_iter=300``).
        tol: Training-loss improvement that counts as progress (scikit-learn's default 1e-4).
        n_iter_no_change: Stop after more than this many epochs without progress (scikit-learn: 10).
        decision: ``gmean`` (AMULET) or ``argmax`` (threshold 0.5).
        evaluate_on: ``test`` (AMULET) or ``members``.

    Examples:
        >>> from interplay.testing.synthetic import synthetic_task, tiny_context, tiny_model
        >>> task, context = synthetic_task(), tiny_context()
        >>> guesses = AttributeInference(max_epochs=20).run(tiny_model(task, context), data=task, context=context)
        >>> sorted(guesses.scores), len(guesses.truth["group"]) == len(task.test)
        (['group'], True)
    """

    name = "attribute_inference"
    Input = QueryAccess
    access = "black-box"
    summary = "MLP on the target's posteriors predicts a sensitive attribute (Aalmoes et al.; AMULET)"
    conformance_params = {"max_epochs": 5}

    class Params(_CommonParams):
        """Hyper-parameters of :class:`AttributeInference` (see the class docstring for their sources)."""

        hidden_sizes: tuple[Annotated[int, Field(ge=1)], ...] = (64, 128, 32)
        alpha: float = Field(default=1e-3, ge=0)
        lr: float = Field(default=1e-3, gt=0)
        batch_size: int = Field(default=200, ge=1)
        max_epochs: int = Field(default=300, ge=1)
        tol: float = Field(default=1e-4, ge=0)
        n_iter_no_change: int = Field(default=10, ge=1)

    params: AttributeInference.Params

    def _spec(self) -> NetSpec:
        p = self.params
        return NetSpec(
            hidden=p.hidden_sizes,
            outputs=1,
            init="glorot",
            alpha=p.alpha,
            lr=p.lr,
            batch_size=p.batch_size,
            max_epochs=p.max_epochs,
            tol=p.tol,
            patience=p.n_iter_no_change,
        )

    def _features(self, target: ModelAccess, x: torch.Tensor) -> torch.Tensor:
        assert isinstance(target, QueryAccess)
        posteriors = self._checked(_chunked(target.query, x), len(x), "posteriors")
        if posteriors.shape[1] != target.num_classes or bool((posteriors < 0).any()):
            raise ArtifactError(
                f"attack {self.name!r}: the target returned posteriors of shape {tuple(posteriors.shape)} "
                f"with negative entries or not {target.num_classes} columns"
            )
        return posteriors


class WhiteBoxAttributeInference(_AttributeAttack):
    """White-box attribute inference: a linear classifier on the target's embeddings (ML-Doctor).

    ML-Doctor's ``<AttrInf, M^W, D_aux^S>`` (Liu et al., 2022, section 3.3, after Melis et al. and
    Song and Shmatikov): the adversary computes the target's penultimate-layer embeddings
    (``TrainedModel.embed``) of its own rows (``data.adversary``) and, per sensitive attribute,
    trains ML-Doctor's ``attrinf_attack_model`` on them: one ``nn.Linear(embedding_size, 2)``,
    trained with cross-entropy and Adam (learning rate 1e-3) for 100 epochs in batches of 64
    (``doctor/attrinf.py``, ``demo.py``). The attack then scores the evaluation records; by default
    it predicts the arg-max class, as ML-Doctor does (``decision="argmax"``, i.e. threshold 0.5 on
    the softmax probability of 1); ``decision="gmean"`` chooses the threshold as
    :class:`AttributeInference` does.

    Deviations from ML-Doctor, and why:

    - ML-Doctor applies ``F.softmax`` to the attack model's output and then ``nn.CrossEntropyLoss``,
      which applies a second softmax; we take the cross-entropy of the logits (the intended loss;
      for one linear layer the decision rule it learns is the same kind, a logistic regression,
      without the flattened gradients of the double softmax).
    - ML-Doctor hooks the output of the module holding the second-to-last weight tensor (for its
      CNNs, the pre-activation of the last hidden linear layer); we use the model's ``embed``,
      the input of its final linear layer (the built-in networks' post-activation features).
    - ML-Doctor's demo trains the attack on half of the target's training data (the *partial*
      threat model); this plugin declares the *shadow* one and uses ``data.adversary``.

    Evaluation set: as :class:`AttributeInference` (ML-Doctor scores the target's test split).

    Args:
        attributes: Sensitive attributes to infer; ``None``: all of them.
        epochs: Training epochs (ML-Doctor: 100).
        lr: Adam's learning rate (ML-Doctor: 1e-3).
        batch_size: Mini-batch size (ML-Doctor: 64).
        decision: ``argmax`` (ML-Doctor) or ``gmean``.
        evaluate_on: ``test`` (ML-Doctor) or ``members``.
    """

    name = "attribute_inference_whitebox"
    Input = TrainedModel
    access = "white-box"
    summary = "attack model on the target's penultimate-layer embeddings (ML-Doctor)"
    conformance_params = {"epochs": 3}

    class Params(_CommonParams):
        """Hyper-parameters of :class:`WhiteBoxAttributeInference` (see the class docstring for their sources)."""

        epochs: int = Field(default=100, ge=1)
        lr: float = Field(default=1e-3, gt=0)
        batch_size: int = Field(default=64, ge=1)
        decision: DecisionRule = "argmax"

    params: WhiteBoxAttributeInference.Params

    def _spec(self) -> NetSpec:
        p = self.params
        return NetSpec(
            hidden=(), outputs=2, init="torch", alpha=0.0, lr=p.lr, batch_size=p.batch_size, max_epochs=p.epochs
        )

    def _features(self, target: ModelAccess, x: torch.Tensor) -> torch.Tensor:
        assert isinstance(target, TrainedModel)
        return self._checked(target.embed(x).flatten(1), len(x), "embeddings")
