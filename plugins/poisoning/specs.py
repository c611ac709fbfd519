"""Declarations of the built-in poisoning modules (data only)."""

from __future__ import annotations

from interplay.registry import PluginSpec

_P = "interplay.plugins"

SPECS: list[PluginSpec] = [
    PluginSpec(
        name="outlier_removal",
        kind="defense",
        target=f"{_P}.poisoning.defenses:OutlierRemoval",
        risks=("S2",),
        input="TaskData",
        output="TaskData",
        summary="remove records by KNN-Shapley value on model embeddings (Jia et al., 2019; AMULET SD2)",
    ),
    PluginSpec(
        name="badnets",
        kind="attack",
        target=f"{_P}.poisoning.attacks:BadNets",
        risks=("S2",),
        input="TaskData",
        output="PoisonedData",
        access="data",
        knowledge="partial",
        summary="backdoor: trigger + target label on a share of the defender's rows (Gu et al., BadNets)",
    ),
    PluginSpec(
        name="backdoor_success_rate",
        kind="metric",
        target=f"{_P}.poisoning.metrics:BackdoorSuccessRate",
        risks=("S2",),
        input="PoisonedData",
        target_access="LabelOnlyAccess",
        higher_is_riskier=True,
        summary="share of triggered test inputs of other classes classified as the target label",
    ),
    PluginSpec(
        name="triggered_accuracy",
        kind="metric",
        target=f"{_P}.poisoning.metrics:TriggeredAccuracy",
        risks=("S2",),
        input="PoisonedData",
        target_access="LabelOnlyAccess",
        higher_is_riskier=False,
        summary="accuracy (true labels) on the triggered test inputs",
    ),
    PluginSpec(
        name="poisoned_clean_accuracy",
        kind="metric",
        target=f"{_P}.poisoning.metrics:PoisonedCleanAccuracy",
        risks=("S2",),
        input="PoisonedData",
        target_access="LabelOnlyAccess",
        higher_is_riskier=False,
        utility=True,
        summary="clean test accuracy of the model trained on the poisoned data (utility reference)",
    ),
    PluginSpec(
        name="clean_model_success_rate",
        kind="metric",
        target=f"{_P}.poisoning.metrics:CleanModelSuccessRate",
        risks=("S2",),
        input="PoisonedData",
        higher_is_riskier=True,
        utility=True,
        summary="backdoor success rate of a model trained on the clean data (reference)",
    ),
]
