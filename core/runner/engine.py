"""Execution of a resolved pipeline: train once per seed, attack, measure, store every cell.

For each seed the runner trains the baseline and each defended model once (chains share their
common prefix, so a post-hoc defense reuses the baseline model), runs each attack once per
defense through the access its declaration allows, and computes every metric of the cell on
that one output. A failure is recorded on the cells that depend on the failing step, with its
traceback; every other cell still completes.
"""

from __future__ import annotations

import hashlib
import json
import time
import traceback
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from ..artifacts import Artifact, ModelAccess, TaskData, TrainedModel
from ..context import Memo, RunContext, TargetProcedure, resolve_device
from ..modules import Attack, Dataset, Defense, Metric, as_metric_list
from ..pipeline import AttackEntry, Pipeline, PluginRef
from ..recipe import TrainingRecipe
from ..registry import ArtifactTypes, Registry, get_registry
from ..resolver import BASELINE, Cell, Resolution, resolve
from .html import render_html
from .progress import Progress
from .report import build_report
from .store import ModelCache, ResultRow, ResultStore, environment

__all__ = ["RunSummary", "Runner"]

Step = tuple[str, Defense | None, dict[str, Any]]


@dataclass
class RunSummary:
    """What a run produced."""

    run_id: str
    out: Path
    rows: list[ResultRow]
    report: dict[str, Any]
    resolution: Resolution

    @property
    def failed(self) -> int:
        """Number of failed (cell, seed) rows."""
        return sum(r.status != "ok" for r in self.rows)


@dataclass
class _Failure:
    error: str


@dataclass
class _SeedState:
    seed: int
    context: RunContext
    tasks: dict[str, TaskData]
    memo: dict[tuple[Any, ...], Artifact | _Failure] = field(default_factory=dict)
    seconds: dict[tuple[Any, ...], float] = field(default_factory=dict)


def _signature(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


class Runner:
    """Runs a pipeline into a run directory.

    Args:
        pipeline: A pipeline whose plugins exist (see :func:`~interplay.pipeline.load_pipeline`).
        out: The run directory (created).
        device: Overrides the scenario's device (``auto``, ``cpu``, ``cuda``).
        registry: Where plugins are looked up (default: the process-wide registry).
        progress: Show progress bars on standard error.
        reuse_models: Load trained models already cached in ``out/models`` instead of retraining.
    """

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        out: str | Path,
        device: str | None = None,
        registry: Registry | None = None,
        progress: bool = True,
        reuse_models: bool = True,
    ) -> None:
        self.pipeline = pipeline
        self.out = Path(out)
        self.registry = registry or get_registry()
        self.device = resolve_device(device or pipeline.scenario.device)
        self.progress = progress
        self.reuse_models = reuse_models
        self.types = ArtifactTypes()
        self._metric_cache: dict[tuple[str, str], Metric] = {}

    # -- set-up ----------------------------------------------------------------------------
    def _plans(self, resolution: Resolution) -> dict[str, list[Step]]:
        entries = {entry.label: entry for entry in self.pipeline.defenses}
        plans: dict[str, list[Step]] = {}
        for plan in resolution.defenses:
            refs = iter(entries[plan.label].chain) if plan.label in entries else iter(())
            steps: list[Step] = []
            for name in plan.steps:
                if name == "train":
                    steps.append(("train", None, {}))
                    continue
                ref = next(refs)
                module = self.registry.create(ref.name, "defense", **ref.params)
                assert isinstance(module, Defense)
                steps.append((ref.name, module, module.get_params()))
            plans[plan.label] = steps
        return plans

    def _metric(self, attack: AttackEntry | None, label: str) -> Metric:
        key = (attack.label if attack is not None else BASELINE, label)
        if key in self._metric_cache:
            return self._metric_cache[key]
        refs = (attack.metrics if attack is not None and attack.metrics is not None else None) or (
            self.pipeline.metrics or []
        )
        ref = next((r for r in refs if r.label == label), None) or PluginRef(name=label)
        module = self.registry.create(ref.name, "metric", **ref.params)
        assert isinstance(module, Metric)
        self._metric_cache[key] = module
        return module

    # -- models ----------------------------------------------------------------------------
    def _cache_key(self, state: _SeedState, variant: str, prefix: tuple[Any, ...]) -> str:
        scenario = self.pipeline.scenario
        versions = {s.distribution: s.version for s in self.registry.specs()}
        document = {
            "dataset": scenario.dataset.model_dump(),
            "model": scenario.model.model_dump(),
            "training": scenario.training.model_dump(),
            "split": scenario.split.model_dump(),
            "seed": state.seed,
            "variant": variant,
            "steps": prefix,
            "versions": versions,
        }
        return hashlib.sha256(_signature(document).encode()).hexdigest()[:32]

    def _load_cached(
        self, cache: ModelCache, key: str, context: RunContext, defense: Defense | None = None
    ) -> TrainedModel | None:
        import torch

        found = cache.load(key) if self.reuse_models else None
        if found is None:
            return None
        state_dict, meta = found
        try:
            factory = (
                self.registry.create(meta["architecture"], "model", **meta["architecture_params"])
                if meta.get("architecture")
                else None
            )
            module = context.build_model(tuple(meta["input_shape"]), meta["num_classes"], factory=factory)  # type: ignore[arg-type]
            if defense is not None:
                module = type(defense).rebuild(module, meta.get("info", {}))
            module.load_state_dict(state_dict)
        except Exception:  # a stale or foreign cache entry: retrain instead
            return None
        recipe = TrainingRecipe(**meta["recipe"]) if meta.get("recipe") else None
        indices = torch.tensor(meta["train_indices"]) if meta.get("train_indices") is not None else None
        return TrainedModel(
            module=module.eval(),
            num_classes=meta["num_classes"],
            input_shape=tuple(meta["input_shape"]),
            recipe=recipe,
            train_indices=indices,
            architecture=meta.get("architecture"),
            architecture_params=meta.get("architecture_params", {}),
            info=meta.get("info", {}),
        )

    def _save_cached(self, cache: ModelCache, key: str, model: TrainedModel) -> None:
        metadata = {
            "num_classes": model.num_classes,
            "input_shape": list(model.input_shape),
            "recipe": model.recipe.model_dump() if model.recipe is not None else None,
            "train_indices": model.train_indices.tolist() if model.train_indices is not None else None,
            "architecture": model.architecture,
            "architecture_params": model.architecture_params,
            "info": model.info,
        }
        state = {k: v.detach().to("cpu") for k, v in model.module.state_dict().items()}
        cache.save(key, state, metadata)

    def _model(self, state: _SeedState, variant: str, steps: list[Step], cache: ModelCache) -> Artifact:
        task = state.tasks[variant]
        current: Artifact = task
        prefix: tuple[Any, ...] = ()
        for name, module, params in steps:
            prefix = (*prefix, (name, _signature(params)))
            memo_key = (variant, prefix)
            found = state.memo.get(memo_key)
            if isinstance(found, _Failure):
                raise _StepError(found.error)
            if found is not None:
                current = found
                continue
            started = time.perf_counter()
            try:
                current = self._step(state, variant, prefix, name, module, current, task, cache)
            except Exception:
                error = traceback.format_exc()
                state.memo[memo_key] = _Failure(error)
                raise _StepError(error) from None
            state.memo[memo_key] = current
            state.seconds[memo_key] = time.perf_counter() - started
        return current

    def _step(
        self,
        state: _SeedState,
        variant: str,
        prefix: tuple[Any, ...],
        name: str,
        module: Defense | None,
        current: Artifact,
        task: TaskData,
        cache: ModelCache,
    ) -> Artifact:
        trains = name == "train" or (module is not None and issubclass(type(module).Output, TrainedModel))
        key = self._cache_key(state, variant, prefix) if trains else ""
        if trains:
            cached = self._load_cached(cache, key, state.context, module)
            if cached is not None:
                return cached
        result = _apply_step(state.context, name, module, current, task)
        if trains and isinstance(result, TrainedModel):
            self._save_cached(cache, key, result)
        return result

    def _model_seconds(self, state: _SeedState, variant: str, steps: list[Step]) -> float:
        total, prefix = 0.0, cast(tuple[Any, ...], ())
        for name, _, params in steps:
            prefix = (*prefix, (name, _signature(params)))
            total += state.seconds.get((variant, prefix), 0.0)
        return total

    # -- execution -------------------------------------------------------------------------
    def run(self) -> RunSummary:
        """Run every cell for every seed; write the store, the model cache and ``report.json``."""
        registry, pipeline = self.registry, self.pipeline
        resolution = resolve(pipeline, registry)
        scenario = pipeline.scenario
        dataset = registry.create(scenario.dataset.name, "dataset", **scenario.dataset.params)
        assert isinstance(dataset, Dataset)
        base = dataset.load() if resolution.cells else None  # bad data fails before anything is written
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "pipeline.yaml").write_text(pipeline.to_yaml())
        store = ResultStore(self.out / "results.sqlite")
        cache = ModelCache(self.out / "models")
        run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
        versions = environment()
        store.begin_run(run_id, pipeline=pipeline.to_yaml(), environment=versions)

        factory = registry.create(scenario.model.name, "model", **scenario.model.params)
        plans = self._plans(resolution)
        attacks = {entry.label: entry for entry in pipeline.attacks}
        attack_modules = {label: registry.create(e.name, "attack", **e.params) for label, e in attacks.items()}
        groups: dict[tuple[str, str], list[Cell]] = defaultdict(list)
        for cell in resolution.cells:
            groups[(cell.defense, cell.attack)].append(cell)

        rows: list[ResultRow] = []
        total = len(resolution.cells) * len(scenario.seeds)
        with Progress(total=total, enabled=self.progress) as progress:
            for seed in scenario.seeds:
                if base is None:
                    break
                context = RunContext(seed=seed, device=self.device, model=factory, recipe=scenario.training)  # type: ignore[arg-type]
                task = base.partitioned(defender=scenario.split.defender, adversary=scenario.split.adversary, seed=seed)
                state = _SeedState(seed=seed, context=context, tasks={"clean": task})
                for (defense_label, attack_label), cells in groups.items():
                    progress.describe(f"seed {seed} · {defense_label} · {attack_label}")
                    batch = self._run_group(
                        state,
                        plans[defense_label],
                        defense_label,
                        attacks.get(attack_label),
                        attack_modules.get(attack_label),
                        cells,
                        cache,
                        versions,
                        run_id,
                    )
                    store.add(batch)
                    rows.extend(batch)
                    progress.advance(len(cells))
        report = build_report(rows)
        (self.out / "report.json").write_text(json.dumps(report, indent=2))
        risk_names = {risk_id: risk.name for risk_id, risk in self.registry.risks.items()}
        page = render_html(report, title=self.pipeline.name or str(self.out), risk_names=risk_names)
        (self.out / "report.html").write_text(page, encoding="utf-8")
        store.finish_run(run_id, "failed" if any(r.status != "ok" for r in rows) else "completed")
        store.close()
        return RunSummary(run_id=run_id, out=self.out, rows=rows, report=report, resolution=resolution)

    def _run_group(
        self,
        state: _SeedState,
        steps: list[Step],
        defense: str,
        entry: AttackEntry | None,
        attack: Any,
        cells: list[Cell],
        cache: ModelCache,
        versions: dict[str, str],
        run_id: str,
    ) -> list[ResultRow]:
        defense_params = [{"name": name, "params": params} for name, _, params in steps if name != "train"]
        common: dict[str, Any] = {
            "seed": state.seed,
            "defense": defense,
            "attack": entry.label if entry else BASELINE,
            "defense_params": defense_params,
            "attack_params": entry.params if entry else {},
            "versions": versions,
            "run_id": run_id,
        }

        def failed(cell: Cell, error: str, **timing: Any) -> ResultRow:
            return ResultRow(
                metric=cell.metric,
                value_name=cell.metric,
                risk=cell.risk,
                intended=cell.intended,
                higher_is_riskier=None,
                value=None,
                status="failed",
                error=error,
                **common,
                **timing,
            )

        attack_seconds: float | None = None
        try:
            started = time.perf_counter()
            variant = "clean"
            if (
                attack is not None
                and isinstance(attack, Attack)
                and self.types.is_task(self.registry.get(attack.name).input or "")
            ):
                variant = self._poison(state, entry, attack)
            poison_seconds = time.perf_counter() - started
            model = self._model(state, variant, steps, cache)
            output: Artifact = model
            data = state.tasks[variant]
            if attack is not None and variant == "clean":
                started = time.perf_counter()
                context = state.context.model_copy(update={"target_procedure": _procedure(state.context, steps)})
                output = attack.run(model, data=data, context=context)
                attack_seconds = time.perf_counter() - started
            elif attack is not None:
                output, attack_seconds = data, poison_seconds
        except _StepError as exc:
            return [failed(c, exc.error) for c in cells]
        except Exception:
            error = traceback.format_exc()
            return [failed(c, error) for c in cells]
        model_seconds = self._model_seconds(state, variant, steps)
        model_info = dict(model.info) if isinstance(model, ModelAccess) else {}
        rows = []
        for cell in cells:
            metric = self._metric(entry, cell.metric)
            started = time.perf_counter()
            try:
                target = model if isinstance(model, ModelAccess) and type(metric).Target is not None else None
                values = as_metric_list(
                    metric.compute(output, target=target, data=data, context=state.context), plugin=metric.name
                )
            except Exception:
                rows.append(
                    failed(cell, traceback.format_exc(), model_seconds=model_seconds, attack_seconds=attack_seconds)
                )
                continue
            seconds = time.perf_counter() - started
            for value in values:
                rows.append(
                    ResultRow(
                        metric=cell.metric,
                        value_name=value.name,
                        risk=cell.risk,
                        intended=cell.intended,
                        higher_is_riskier=value.higher_is_riskier,
                        utility=type(metric).utility,
                        value=value.value,
                        status="ok",
                        metric_params=metric.get_params(),
                        details=value.details,
                        model_info=model_info,
                        model_seconds=model_seconds,
                        attack_seconds=attack_seconds,
                        metric_seconds=seconds,
                        **common,
                    )
                )
        return rows

    def _poison(self, state: _SeedState, entry: AttackEntry | None, attack: Attack) -> str:
        assert entry is not None
        variant = f"poisoned:{entry.label}"
        if variant not in state.tasks:
            key = ("poison", entry.label)
            found = state.memo.get(key)
            if isinstance(found, _Failure):
                raise _StepError(found.error)
            try:
                poisoned = attack.run(state.tasks["clean"], data=state.tasks["clean"], context=state.context)
            except Exception:
                state.memo[key] = _Failure(traceback.format_exc())
                raise
            assert isinstance(poisoned, TaskData)
            state.tasks[variant] = poisoned
        return variant


def _apply_step(context: RunContext, name: str, module: Defense | None, current: Artifact, task: TaskData) -> Artifact:
    """One step of a defense plan: standard training (``train``) or a defense."""
    if name == "train":
        if not isinstance(current, TaskData):
            raise TypeError(f"standard training needs TaskData, got {type(current).__name__}")
        indices = current.partition.defender if current.partition is not None else None
        return context.train(current.defender_train, train_indices=indices)
    assert module is not None
    result: Artifact = module.apply(current, data=task, context=context)
    return result


def _procedure(context: RunContext, steps: list[Step]) -> TargetProcedure:
    """The cell's way of producing a model (its plan's steps), for :meth:`RunContext.train_like_target`."""

    def produce(task: TaskData, seed: int) -> ModelAccess:
        fresh = context.model_copy(update={"seed": seed, "memo": Memo(), "target_procedure": None})
        current: Artifact = task
        for name, module, _ in steps:
            current = _apply_step(fresh, name, module, current, task)
        if not isinstance(current, ModelAccess):
            raise TypeError(f"the defense chain produced {type(current).__name__}, not a model")
        return current

    return produce


class _StepError(Exception):
    def __init__(self, error: str) -> None:
        super().__init__(error.strip().splitlines()[-1] if error.strip() else "failed")
        self.error = error


def run_pipeline(pipeline: Pipeline, *, out: str | Path, **options: Any) -> RunSummary:
    """Convenience wrapper: ``Runner(pipeline, out=out, **options).run()``."""
    return Runner(pipeline, out=out, **options).run()
