"""The installed distribution: every module of the study appears in ``interplay plugins`` under its name."""

from __future__ import annotations

import json
import subprocess
import sys

from interplay_stolen_risks.manifest import PLUGINS

#: Every module the study needs, by family.
EXPECTED = {
    "dataset": {"medical_insurance", "customer_churn", "spam_account", "spam_url", "cryptojacking"},
    "defense": {
        "local_invariance",
        "local_invariance_t",
        "lipschitz",
        "lipschitz_t",
        "xgb",
        "monotonicity",
        "small_neighborhood",
        "prediction_poisoning",
        "adaptive_misinformation",
        "boundary_fuzz",
        "boundary_fuzz_trees",
    },
    "attack": {"random_query", "line_search", "jba", "masked_thief", "mixmatch"},
    "metric": {
        "posterior_mse",
        "substitute_f1_minority",
        "constraint_accuracy",
        "tree_constraint_accuracy",
        "boundary_fuzz_accuracy",
        "id_ood_agreement",
        "angular_deviation",
        "target_performance",
    },
}


def test_every_module_is_listed_with_the_distribution_name() -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "interplay", "plugins", "--json"], capture_output=True, text=True, check=True
    )
    document = json.loads(listed.stdout)
    ours = {(p["kind"], p["name"]) for p in document["plugins"] if p["distribution"] == "interplay-stolen-risks"}
    assert ours == {(kind, name) for kind, names in EXPECTED.items() for name in names}
    assert ours == {(spec.kind, spec.name) for spec in PLUGINS}
    assert document["errors"] == []
