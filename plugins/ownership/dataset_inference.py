"""Dataset inference (SD3): ownership resolution from distances to the decision boundary.

Reference:
    Pratyush Maini, Mohammad Yaghini and Nicolas Papernot. "Dataset Inference: Ownership Resolution
    in Machine Learning". ICLR 2021. https://arxiv.org/abs/2104.10706; code at
    https://github.com/cleverhans-lab/dataset-inference (AMULET's ``Fingerprinting`` defense copies it).

A model stolen from the victim, by any means, carries knowledge of the victim's private training
set: its training samples lie farther from its decision boundaries than unseen samples of the
same distribution. The victim embeds samples by their distances to the boundaries of a model
(:mod:`._boundary`), trains a confidence regressor to tell its own private samples (low score) from
public ones (high score), and tests whether the suspect's scores on held-out private samples are
significantly lower than on public ones (:mod:`._inference`).

Dataset inference is *passive*: the model is trained as usual, and the ownership claim is
resolved afterwards. Here the :class:`DatasetInference` defense trains the scenario's model on the
defender's rows unchanged (recording ``info["dataset_inference"] = True``), and the verification is
a pair of S3 metrics on the :class:`~interplay.artifacts.SurrogateModel` of a model-extraction attack:

- ``dataset_inference_p_value``: the test's p-value for the suspect. A *high* p-value means the
  owner cannot show the theft, so ``higher_is_riskier = True``;
- ``dataset_inference_verdict``: 1.0 when the p-value is below ``alpha`` (the suspect is judged
  derived from the victim's private data), else 0.0; ``higher_is_riskier = False``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import torch
from pydantic import Field

from interplay.artifacts import LabelOnlyAccess, MetricValue, SurrogateModel, TaskData, TrainedModel, fingerprint
from interplay.context import Memo, RunContext
from interplay.errors import ArtifactError
from interplay.modules import Defense, Metric, Params

from ._boundary import NORMS, blind_walk_distances, mingd_distances
from ._inference import Regressor, TestResult, features, norm_statistics, train_regressor, welch_greater

if TYPE_CHECKING:
    from ._boundary import BoundaryNorm

__all__ = ["DatasetInference", "DatasetInferencePValue", "DatasetInferenceParams", "DatasetInferenceVerdict"]


class DatasetInference(Defense):
    """Dataset inference (Maini et al., ICLR 2021): train as usual, resolve ownership later.

    The model trains on the defender's rows with the scenario's architecture and recipe, exactly as
    without the defense; ``info["dataset_inference"]`` marks it. The victim's private samples are the
    model's ``train_indices``. Verification is done by the ``dataset_inference_p_value`` and
    ``dataset_inference_verdict`` metrics, which hold the method's hyper-parameters.

    Raises:
        ConfigError: (from :meth:`apply`) When the context has no model factory.
    """

    name = "dataset_inference"
    risks = ("S3",)
    Input = TaskData
    Output = TrainedModel
    summary = "train as usual; resolve ownership by dataset inference (Maini et al., 2021)"

    def apply(
        self, target: TaskData, /, *, data: TaskData | None = None, context: RunContext | None = None
    ) -> TrainedModel:
        """Train the scenario's model on ``target.defender_train``.

        Args:
            target: The task; the model trains on the defender's rows (all training rows when the
                task has no partition).
            data: Unused (the task is ``target``).
            context: Seed, device, model factory and training recipe. Required.

        Returns:
            The trained model; ``train_indices`` are the defender's rows (the private set), ``info``
            records ``dataset_inference=True`` and ``private_samples``.

        Raises:
            ConfigError: When ``context`` is missing or names no model factory.
        """
        context = self.require_training_context(context)
        indices = target.partition.defender if target.partition is not None else None
        private = target.defender_train
        return context.train(
            private, train_indices=indices, info={"dataset_inference": True, "private_samples": len(private)}
        )


class DatasetInferenceParams(Params):
    """Hyper-parameters of dataset inference, with the defaults of Maini et al.'s code.

    Attributes:
        embedding: ``mingd`` (white-box MinGD on the suspect) or ``blind_walk`` (label-only Blind Walk).
        max_samples: Private and public samples embedded, each (the reference embeds 1,000 of each).
        regressor_fraction: Share of them that trains the confidence regressor; the rest is tested
            (the reference's ``split_index = 500`` of 1,000).
        m: Samples of each set per t-test.
        repetitions: Random draws of ``m`` samples; their p-values are combined by harmonic mean
            (the notebooks' ``total_inner_rep = 100``).
        alpha: Significance level of the verdict (99% confidence).
        mingd_iterations: At most this many MinGD steps (``num_iter``).
        step_linf: MinGD step for L-infinity (``alpha_l_inf``).
        step_l2: MinGD step for L2 (``alpha_l_2``).
        step_l1: MinGD step for L1, spread over ``l1_k`` coordinates (``alpha_l_1``).
        l1_k: Coordinates per L1 step (``k``), at most the input's dimension.
        l1_gap: L1 steps freeze coordinates this close to the bound they move towards (``gap``).
        walk_starts: Random directions per sample and norm (the reference's 10).
        walk_steps: Blind Walk steps per direction (50; the reference uses 100 on SVHN).
        walk_uniform: Half-width of the uniform noise of the L-infinity walk.
        walk_std: Standard deviation of the Gaussian noise of the L2 walk.
        walk_scale: Scale of the Laplace noise of the L1 walk.
        regressor: ``mlp`` (two layers, the paper's) or ``linear``.
        regressor_hidden: Hidden width of the ``mlp`` regressor.
        regressor_epochs: Full-batch SGD steps of the regressor.
        regressor_lr: Its learning rate.
        clip_min: Lower bound of valid inputs (the reference clips to [0, 1]), or ``None``.
        clip_max: Upper bound of valid inputs, or ``None``.
    """

    embedding: Literal["mingd", "blind_walk"] = "mingd"
    max_samples: int = Field(default=1000, ge=4)
    regressor_fraction: float = Field(default=0.5, gt=0, lt=1)
    m: int = Field(default=10, ge=2)
    repetitions: int = Field(default=100, ge=1)
    alpha: float = Field(default=0.01, gt=0, lt=1)
    mingd_iterations: int = Field(default=500, ge=1)
    step_linf: float = Field(default=0.001, gt=0, allow_inf_nan=False)
    step_l2: float = Field(default=0.01, gt=0, allow_inf_nan=False)
    step_l1: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    l1_k: int = Field(default=100, ge=1)
    l1_gap: float = Field(default=0.001, ge=0, allow_inf_nan=False)
    walk_starts: int = Field(default=10, ge=1)
    walk_steps: int = Field(default=50, ge=1)
    walk_uniform: float = Field(default=0.005, gt=0, allow_inf_nan=False)
    walk_std: float = Field(default=0.005, gt=0, allow_inf_nan=False)
    walk_scale: float = Field(default=0.01, gt=0, allow_inf_nan=False)
    regressor: Regressor = "mlp"
    regressor_hidden: int = Field(default=100, ge=1)
    regressor_epochs: int = Field(default=1000, ge=1)
    regressor_lr: float = Field(default=0.1, gt=0, allow_inf_nan=False)
    clip_min: float | None = 0.0
    clip_max: float | None = 1.0


class _DatasetInferenceMetric(Metric):
    """Shared computation of the two dataset-inference metrics (memoised per victim and suspect)."""

    __abstract__ = True
    risks = ("S3",)
    Input = SurrogateModel
    Target = TrainedModel
    # The kit's tiny task has 60 private and 60 public rows; 20 MinGD steps and 50 regressor steps suffice.
    conformance_params = {"mingd_iterations": 20, "regressor_epochs": 50, "repetitions": 20}
    Params = DatasetInferenceParams
    params: DatasetInferenceParams

    def _evidence(
        self, output: SurrogateModel, target: TrainedModel | None, data: TaskData | None, context: RunContext | None
    ) -> dict[str, Any]:
        if target is None:
            raise ArtifactError(
                f"metric {self.name!r} needs target= (the victim: the TrainedModel the surrogate was extracted from)"
            )
        if data is None:
            raise ArtifactError(
                f"metric {self.name!r} needs data= (a TaskData: the victim's training rows and its test split)"
            )
        context = context if context is not None else RunContext()
        key = Memo.key("dataset_inference", self.params, fingerprint(target.module), fingerprint(output.model.module))
        return context.memo.get_or_compute(key, lambda: self._run(output.model, target, data, context))

    def _samples(self, target: TrainedModel, data: TaskData, context: RunContext) -> tuple[Any, Any]:
        split = data.partition.split if data.partition is not None else "train"
        train = data.splits[split]
        private = train.subset(target.train_indices) if target.train_indices is not None else data.defender_train
        public = data.test
        if min(len(private), len(public)) < 4:
            raise ArtifactError(
                f"metric {self.name!r} needs at least 4 private (training) and 4 public (test) samples, got "
                f"{len(private)} and {len(public)}"
            )
        # As many public as private samples: the regressor's loss weighs the two sets by their sizes.
        n = min(self.params.max_samples, len(private), len(public))
        generator = context.generator("metric", "dataset_inference", "samples")
        pick_private = torch.randperm(len(private), generator=generator)[:n]
        pick_public = torch.randperm(len(public), generator=generator)[:n]
        return private.subset(pick_private), public.subset(pick_public)

    def _distances(self, model: TrainedModel, x: torch.Tensor, y: torch.Tensor, context: RunContext) -> torch.Tensor:
        """Embeddings ``(N, K or walk_starts, 3)`` of one model, norms in the reference's order."""
        p = self.params
        bounds = {"clip_min": p.clip_min, "clip_max": p.clip_max}
        per_norm = []
        if p.embedding == "mingd":
            steps: dict[BoundaryNorm, float] = {"linf": p.step_linf, "l2": p.step_l2, "l1": p.step_l1}
            with model.evaluating() as module:
                x = x.to(model.device)
                for norm in NORMS:
                    per_norm.append(
                        mingd_distances(
                            module,
                            x,
                            model.num_classes,
                            norm=norm,
                            step=steps[norm],
                            iterations=p.mingd_iterations,
                            l1_k=p.l1_k,
                            l1_gap=p.l1_gap,
                            **bounds,
                        ).cpu()
                    )
        else:
            labels = model.narrow(LabelOnlyAccess)
            scales: dict[BoundaryNorm, float] = {"linf": p.walk_uniform, "l2": p.walk_std, "l1": p.walk_scale}
            for norm in NORMS:
                generator = context.generator("metric", "dataset_inference", "walk", norm)
                per_norm.append(
                    blind_walk_distances(
                        labels.predict,
                        x,
                        y,
                        norm=norm,
                        scale=scales[norm],
                        starts=p.walk_starts,
                        steps=p.walk_steps,
                        generator=generator,
                        **bounds,
                    ).cpu()
                )
        return torch.stack(per_norm, dim=-1)

    def _run(self, suspect: TrainedModel, victim: TrainedModel, data: TaskData, context: RunContext) -> dict[str, Any]:
        p = self.params
        private, public = self._samples(victim, data, context)
        n_reg_private = n_reg_public = max(2, min(len(private) - 2, round(p.regressor_fraction * len(private))))

        def scores(model: TrainedModel) -> tuple[torch.Tensor, torch.Tensor]:
            return self._distances(model, private.x, private.y, context), self._distances(
                model, public.x, public.y, context
            )

        victim_key = Memo.key("dataset_inference", "victim", p, fingerprint(victim.module))
        victim_private, victim_public = context.memo.get_or_compute(victim_key, lambda: scores(victim))
        sort = p.embedding == "mingd"
        mean, std = norm_statistics(victim_private)
        regressor = train_regressor(
            features(victim_private[:n_reg_private], sort=sort, mean=mean, std=std),
            features(victim_public[:n_reg_public], sort=sort, mean=mean, std=std),
            kind=p.regressor,
            hidden=p.regressor_hidden,
            epochs=p.regressor_epochs,
            lr=p.regressor_lr,
            generator=context.generator("metric", "dataset_inference", "regressor"),
        )

        def test(embedded_private: torch.Tensor, embedded_public: torch.Tensor, label: str) -> TestResult:
            with torch.no_grad():
                s_private = regressor(features(embedded_private[n_reg_private:], sort=sort, mean=mean, std=std))
                s_public = regressor(features(embedded_public[n_reg_public:], sort=sort, mean=mean, std=std))
            return welch_greater(
                s_private.squeeze(-1),
                s_public.squeeze(-1),
                m=p.m,
                repetitions=p.repetitions,
                generator=context.generator("metric", "dataset_inference", "test", label),
            )

        suspect_result = test(*scores(suspect), "suspect")
        victim_result = test(victim_private, victim_public, "victim")
        return {
            "p_value": suspect_result.p_value,
            "verdict": suspect_result.p_value < p.alpha,
            "p_value_all": suspect_result.p_value_all,
            "mean_difference": suspect_result.mean_difference,
            "victim_p_value": victim_result.p_value,
            "victim_mean_difference": victim_result.mean_difference,
            "alpha": p.alpha,
            "m": p.m,
            "embedding": p.embedding,
            "n_private_tested": len(private) - n_reg_private,
            "n_public_tested": len(public) - n_reg_public,
            "defended": bool(victim.info.get("dataset_inference", False)),
        }


class DatasetInferencePValue(_DatasetInferenceMetric):
    """p-value of dataset inference that the suspect was derived from the victim's private data.

    Welch's one-sided t-test on the confidence regressor's scores of ``m`` held-out private and
    ``m`` public samples, repeated ``repetitions`` times and combined by harmonic mean (Maini et al.,
    section 5 and their notebooks). Higher is riskier: a high p-value means the theft cannot be shown.
    ``details`` hold the verdict, the effect size ``mean_difference``, the p-value of one test on all
    held-out samples and the same test on the victim itself (``victim_p_value``).
    """

    name = "dataset_inference_p_value"
    higher_is_riskier = True

    def compute(
        self,
        output: SurrogateModel,
        /,
        *,
        target: TrainedModel | None = None,
        data: TaskData | None = None,
        context: RunContext | None = None,
    ) -> MetricValue:
        """Resolve ownership of ``output``'s surrogate against the victim ``target``.

        Args:
            output: The suspect (a model-extraction surrogate).
            target: The victim, white-box (the owner embeds its own model).
            data: The task: the victim's private rows are its ``train_indices`` of the partitioned
                split, the public rows its ``test`` split.
            context: Seed, device and the memo shared with ``dataset_inference_verdict``.

        Raises:
            ArtifactError: When ``target`` or ``data`` is missing, or fewer than 4 private or public
                samples are available.
        """
        evidence = self._evidence(output, target, data, context)
        return MetricValue(
            name=self.name, value=evidence["p_value"], higher_is_riskier=True, risk="S3", details=evidence
        )


class DatasetInferenceVerdict(_DatasetInferenceMetric):
    """Dataset inference's verdict: 1.0 when the suspect is judged stolen (p-value below ``alpha``), else 0.0.

    Lower is riskier: a verdict of 0 on a stolen model is a theft the owner cannot resolve. The
    computation is :class:`DatasetInferencePValue`'s, shared through the context's memo.
    """

    name = "dataset_inference_verdict"
    higher_is_riskier = False

    def compute(
        self,
        output: SurrogateModel,
        /,
        *,
        target: TrainedModel | None = None,
        data: TaskData | None = None,
        context: RunContext | None = None,
    ) -> MetricValue:
        """Whether dataset inference judges ``output``'s surrogate derived from the victim ``target``.

        Args:
            output: The suspect (a model-extraction surrogate).
            target: The victim, white-box.
            data: The task (see :meth:`DatasetInferencePValue.compute`).
            context: Seed, device and the memo shared with ``dataset_inference_p_value``.

        Raises:
            ArtifactError: When ``target`` or ``data`` is missing, or fewer than 4 private or public
                samples are available.
        """
        evidence = self._evidence(output, target, data, context)
        return MetricValue(
            name=self.name, value=float(evidence["verdict"]), higher_is_riskier=False, risk="S3", details=evidence
        )
