"""A tiny end-to-end demo run: every stage runs and the report has every section."""

import json
import re

from iipa.demo import DemoConfig, run_demo

SECTIONS = ["Findings", "PDIP database (paper Table 1)", "Test pairwise accuracy", "Training curve",
            "Score histogram with fitted Gaussian", "Examples per popularity level", "Grad-CAM", "Configuration"]


def test_quick_demo_writes_a_complete_report(tmp_path):
    lines: list[str] = []
    metrics = run_demo(DemoConfig.quick(str(tmp_path / "demo")), say=lines.append)
    out = tmp_path / "demo"
    html = (out / "report.html").read_text()
    for section in SECTIONS:
        assert section in html, section
    assert "http://" not in html and "https://" not in html  # self-contained
    assert len(re.findall(r"src='data:image/jpeg;base64,", html)) >= 4
    # the score histogram, inline; the default recipe fits once, so a sentence stands for the curve
    assert html.count("<svg ") == 1 and "no training curve to draw" in html
    assert "Backbone tiny (random initial weights), default recipe" in html and "None" not in html.split("<h2>")[1]
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["pairs"]["total"] == metrics["pairs"]["total"] > 0
    for key in ("table1", "label_agreement_with_truth", "ranker", "baseline", "chance", "training"):
        assert key in saved
    for model in ("ranker", "baseline"):
        for against in ("vs_pdip_labels", "vs_true_order"):
            acc = saved[model][against]["accuracy"]
            assert 0.0 <= acc <= 1.0
    # PDIP labels follow the simulator's truth far more often than chance (the paper's premise)
    assert saved["label_agreement_with_truth"]["train"] > 0.7
    assert [line.split("]")[0] for line in lines[:7]] == [f"[{i}/7" for i in range(1, 8)]


def test_demo_command_help(run_cli):
    code, out, _ = run_cli("demo", "--help")
    assert code == 0 and "--quick" in out
