"""Reproduce the CENSUS part of AMULET's Table 6 (SD1 adversarial training x P2 attribute inference).

Runs ``examples/census_sd1_p2.yaml`` (adversarial training at eps 0.01, 0.03, 0.06, 0.10; PGD at the
same budgets; attribute inference of race and sex) and prints our numbers beside the paper's, mean ±
standard error over seeds (accuracies in percent, AUC as a fraction). Needs UCI Adult under
``INTERPLAY_DATA``.

    python benchmarks/reproduce/amulet_table6.py [--seeds 5] [--out runs/amulet_table6_census]
"""

from __future__ import annotations

from _tables import arguments, cell, print_table, run_example

EPSILONS = ("0.01", "0.03", "0.06", "0.1")

# AMULET Table 6, CENSUS (mean ± standard error over 10 runs; accuracies in percent).
PAPER: dict[str, tuple[str, ...]] = {
    "baseline": ("81.99 ± 0.57", "-", "-", "58.58 ± 0.88", "0.61 ± 0.01", "65.06 ± 1.21", "0.69 ± 0.01"),
    "0.01": (
        "82.53 ± 0.44",
        "73.87 ± 1.18",
        "81.15 ± 0.68",
        "59.64 ± 0.53",
        "0.62 ± 0.01",
        "65.88 ± 0.80",
        "0.70 ± 0.01",
    ),
    "0.03": (
        "83.00 ± 0.26",
        "44.25 ± 4.27",
        "80.10 ± 0.79",
        "60.23 ± 0.63",
        "0.63 ± 0.01",
        "66.23 ± 0.58",
        "0.70 ± 0.00",
    ),
    "0.06": (
        "83.40 ± 0.36",
        "22.70 ± 1.95",
        "80.03 ± 0.64",
        "60.28 ± 0.31",
        "0.63 ± 0.00",
        "66.78 ± 1.09",
        "0.71 ± 0.01",
    ),
    "0.1": (
        "83.70 ± 0.24",
        "20.89 ± 0.88",
        "76.03 ± 2.58",
        "60.60 ± 0.59",
        "0.64 ± 0.01",
        "67.44 ± 1.07",
        "0.72 ± 0.01",
    ),
}
COLUMNS = ("Acc_te", "Acc_rob(M_std)", "Acc_rob(M_def)", "Acc_att(Race)", "AUC(Race)", "Acc_att(Sex)", "AUC(Sex)")


def _attribute(report: dict, defense: str) -> tuple[str, ...]:
    return (
        cell(report, defense, "attribute_inference", "attribute_balanced_accuracy[race]"),
        cell(report, defense, "attribute_inference", "attribute_auc[race]", percent=False),
        cell(report, defense, "attribute_inference", "attribute_balanced_accuracy[sex]"),
        cell(report, defense, "attribute_inference", "attribute_auc[sex]", percent=False),
    )


def main() -> None:
    args = arguments(__doc__.splitlines()[0], "amulet_table6_census")
    summary = run_example("census_sd1_p2.yaml", args)
    report = summary.report
    baseline = (cell(report, "none", "pgd@eps=0.01", "clean_accuracy"), "-", "-", *_attribute(report, "none"))
    rows = {"baseline": (baseline, PAPER["baseline"])}
    for eps in EPSILONS:
        defense, pgd = f"adversarial_training@eps={eps}", f"pgd@eps={eps}"
        ours = (
            cell(report, defense, pgd, "clean_accuracy"),
            cell(report, "none", pgd, "robust_accuracy"),
            cell(report, defense, pgd, "robust_accuracy"),
            *_attribute(report, defense),
        )
        rows[f"eps={eps}"] = (ours, PAPER[eps])
    title = f"AMULET Table 6, CENSUS: ours ({args.seeds} seeds) | paper (10 runs); mean ± standard error"
    print_table(title, COLUMNS, rows)
    print(f"{summary.failed} failed results; run directory {args.out}")


if __name__ == "__main__":
    main()
