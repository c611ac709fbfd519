"""Declarations of the built-in privacy modules (data only: importing this module imports no implementation)."""

from __future__ import annotations

from interplay.registry import PluginSpec

_P = "interplay.plugins.privacy"


def _metric(name: str, target: str, risk: str, input_type: str, higher: bool, summary: str) -> PluginSpec:
    return PluginSpec(
        name=name,
        kind="metric",
        target=f"{_P}.{target}",
        risks=(risk,),
        input=input_type,
        higher_is_riskier=higher,
        summary=summary,
    )


MEMBERSHIP = [
    PluginSpec(
        name="lira",
        kind="attack",
        target=f"{_P}.lira:LiRA",
        risks=("P1",),
        input="QueryAccess",
        output="MembershipScores",
        access="black-box",
        knowledge="shadow",
        summary="likelihood-ratio attack, online and offline (Carlini et al., 2022)",
    ),
    PluginSpec(
        name="mia_shadow",
        kind="attack",
        target=f"{_P}.mia:ShadowMembershipInference",
        risks=("P1",),
        input="QueryAccess",
        output="MembershipScores",
        access="black-box",
        knowledge="shadow",
        summary="shadow-model attack on sorted posteriors (Salem et al., 2019; ML-Doctor)",
    ),
    PluginSpec(
        name="mia_whitebox",
        kind="attack",
        target=f"{_P}.mia:WhiteBoxMembershipInference",
        risks=("P1",),
        input="TrainedModel",
        output="MembershipScores",
        access="white-box",
        knowledge="shadow",
        summary="attack model on posteriors, loss, label and last-layer gradient (Nasr et al., 2019; ML-Doctor)",
    ),
    _metric("mia_auc", "membership_metrics:MembershipAUC", "P1", "MembershipScores", True, "area under the ROC curve"),
    _metric(
        "mia_balanced_accuracy",
        "membership_metrics:MembershipBalancedAccuracy",
        "P1",
        "MembershipScores",
        True,
        "best balanced accuracy over the ROC curve's thresholds",
    ),
    _metric(
        "mia_tpr_at_fpr",
        "membership_metrics:MembershipTPRAtFPR",
        "P1",
        "MembershipScores",
        True,
        "true-positive rate at fixed low false-positive rates (1 %, 0.1 %)",
    ),
]

ATTRIBUTE = [
    PluginSpec(
        name="attribute_inference",
        kind="attack",
        target=f"{_P}.attribute:AttributeInference",
        risks=("P2",),
        input="QueryAccess",
        output="AttributeGuesses",
        access="black-box",
        knowledge="shadow",
        summary="MLP on the target's posteriors predicts a sensitive attribute (Aalmoes et al.; AMULET)",
    ),
    PluginSpec(
        name="attribute_inference_whitebox",
        kind="attack",
        target=f"{_P}.attribute:WhiteBoxAttributeInference",
        risks=("P2",),
        input="TrainedModel",
        output="AttributeGuesses",
        access="white-box",
        knowledge="shadow",
        summary="attack model on the target's penultimate-layer embeddings (ML-Doctor)",
    ),
    _metric(
        "attribute_accuracy",
        "attribute_metrics:AttributeAccuracy",
        "P2",
        "AttributeGuesses",
        True,
        "attack accuracy per sensitive attribute",
    ),
    _metric(
        "attribute_balanced_accuracy",
        "attribute_metrics:AttributeBalancedAccuracy",
        "P2",
        "AttributeGuesses",
        True,
        "attack balanced accuracy per sensitive attribute",
    ),
    _metric(
        "attribute_auc",
        "attribute_metrics:AttributeAUC",
        "P2",
        "AttributeGuesses",
        True,
        "attack AUC per sensitive attribute",
    ),
]

RECONSTRUCTION = [
    PluginSpec(
        name="model_inversion",
        kind="attack",
        target=f"{_P}.inversion:ModelInversion",
        risks=("P3",),
        input="TrainedModel",
        output="Reconstructions",
        access="white-box",
        knowledge="none",
        summary="gradient descent on the input to maximise each class's confidence (Fredrikson et al., 2015)",
    ),
    _metric(
        "inversion_mse",
        "inversion_metrics:InversionMSE",
        "P3",
        "Reconstructions",
        False,
        "MSE of each reconstruction to its class's mean training input",
    ),
    _metric(
        "inversion_ssim",
        "inversion_metrics:InversionSSIM",
        "P3",
        "Reconstructions",
        True,
        "SSIM of each reconstruction to its class's mean training input",
    ),
]

DISTRIBUTION = [
    PluginSpec(
        name="distribution_inference",
        kind="attack",
        target=f"{_P}.distribution:DistributionInference",
        risks=("P4",),
        input="QueryAccess",
        output="PropertyGuesses",
        access="black-box",
        knowledge="shadow",
        summary="KL-divergence test between victim and shadow models of two property ratios (Suri et al., 2023)",
    ),
    PluginSpec(
        name="distribution_inference_whitebox",
        kind="attack",
        target=f"{_P}.distribution:WhiteBoxDistributionInference",
        risks=("P4",),
        input="TrainedModel",
        output="PropertyGuesses",
        access="white-box",
        knowledge="shadow",
        summary="permutation-invariant meta-classifier on shadow models' weights (Ganju et al.; Suri and Evans)",
    ),
    _metric(
        "distinguishing_accuracy",
        "distribution_metrics:DistinguishingAccuracy",
        "P4",
        "PropertyGuesses",
        True,
        "share of trials whose training ratio the attack names correctly",
    ),
]

DEFENSES = [
    PluginSpec(
        name="dp_sgd",
        kind="defense",
        target=f"{_P}.dp_sgd:DPSGD",
        risks=("P1", "P3"),
        input="TaskData",
        output="TrainedModel",
        summary="differentially private SGD through Opacus (Abadi et al., 2016)",
    ),
    PluginSpec(
        name="distillation",
        kind="defense",
        target=f"{_P}.distillation:Distillation",
        risks=("P1",),
        input="TrainedModel",
        output="TrainedModel",
        summary="student trained on the target's softened posteriors (Hinton et al., 2015; ML-Doctor)",
    ),
]

SPECS: list[PluginSpec] = [*MEMBERSHIP, *ATTRIBUTE, *RECONSTRUCTION, *DISTRIBUTION, *DEFENSES]
