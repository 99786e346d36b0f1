"""One definition per constant: no two modules of src/iipa assign the same upper-case name
the same value (a copy drifts; import it instead), and `iipa pairs build`'s rule options
default to the paper's RuleConfig."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

from iipa.cli import build_parser
from iipa.commands.pairs import _rules
from iipa.pairs.rules import PAPER, RuleConfig

SRC = Path(__file__).resolve().parents[1] / "src" / "iipa"
# Copies that still exist so that a command's parser need not import its library module
# (torch or PIL at `iipa --help`); each should go when its owner makes the module light.
KNOWN_COPIES = {
    "CROPS": "commands/_common.py copies profiles.py (numpy, PIL)",
    "ARCHITECTURES": "commands/experiment.py copies train/experiments.py (torch)",
    "NOISE_LEVELS": "commands/experiment.py copies train/experiments.py (torch)",
}
# Same name and value, different things: each module's own file format number.
SAME_NAME_OTHER_MEANING = {"FORMAT_VERSION": "checkpoint.py's checkpoint format, simulate/config.py's config format"}


def _value(node: ast.expr) -> object:
    try:
        return ast.literal_eval(node)
    except ValueError:  # 86_400 * 1_000_000 and the like: evaluate plain arithmetic of literals
        try:
            return eval(compile(ast.Expression(node), "<constant>", "eval"), {"__builtins__": {}})  # noqa: S307
        except Exception:  # noqa: BLE001 - names, calls: compare the source text
            return ast.unparse(node)


def constant_definitions() -> dict[tuple[str, str], list[str]]:
    """(name, repr of value) → modules assigning it at module level."""
    found: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, ast.AnnAssign) and node.value is not None else []
            for t in targets:
                if isinstance(t, ast.Name) and t.id.lstrip("_").isupper() and t.id not in ("_EXPORTS", "T"):
                    found[(t.id, repr(_value(node.value)))].append(str(path.relative_to(SRC)))
    return found


def test_no_module_defines_a_constant_another_defines():
    copies = {name: modules for (name, _), modules in constant_definitions().items() if len(modules) > 1}
    unexpected = {n: m for n, m in copies.items() if n not in KNOWN_COPIES and n not in SAME_NAME_OTHER_MEANING}
    assert not unexpected, f"defined in several places, import one instead: {unexpected}"
    fixed = sorted(set(KNOWN_COPIES) - set(copies))
    assert not fixed, f"no longer copied, remove from KNOWN_COPIES: {fixed}"


def test_the_scan_sees_a_copy():
    """The check above can fail: two spellings of one value are the same constant."""
    assert _value(ast.parse("86_400 * 1_000_000", mode="eval").body) == 86_400_000_000


def test_pairs_build_rule_options_default_to_the_papers_rules():
    args = build_parser().parse_args(["pairs", "build", "posts.csv", "--out", "out"])
    assert _rules(args) == RuleConfig() == PAPER
    assert (args.threshold, args.sigma, args.min_likes, args.min_age_days, args.max_gap_days) == \
        (PAPER.threshold, PAPER.sigma, PAPER.min_likes, PAPER.min_age_days, PAPER.max_gap_days)
