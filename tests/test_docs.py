"""docs/ stays true: every rule id in enrichers/ is in the finding catalogue, every setting and flag documented."""

from __future__ import annotations

import re
from pathlib import Path

from agent import config as cfgmod
from agent.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

PATTERNS = (
    r'rule="([a-z][a-z0-9_.]+)"',
    r'_add\(\s*agg,\s*"([a-z][a-z0-9_.]+)"',
    r'Rule\(\s*(?:id=)?"([a-z][a-z0-9_.]+)"',
)


def rule_ids() -> set[str]:
    ids: set[str] = set()
    for p in (ROOT / "enrichers").rglob("*.py"):
        text = p.read_text()
        for pat in PATTERNS:
            ids |= set(re.findall(pat, text))
    try:
        from enrichers.zerotrust import enricher as zt

        ids |= {zt.RULE_PREFIX + k for k in zt.KINDS}
    except ImportError:
        pass
    try:
        from enrichers.abuse import rules as ar

        ids |= {v.id for v in vars(ar).values() if type(v).__name__ == "Rule"}
    except ImportError:
        pass
    return ids


def test_every_rule_is_in_the_catalogue() -> None:
    text = (DOCS / "findings.md").read_text()
    ids = rule_ids()
    assert len(ids) > 20
    missing = sorted(i for i in ids if f"`{i}`" not in text)
    assert not missing, f"add these rules to docs/findings.md: {missing}"


def test_every_setting_and_run_flag_is_in_the_configuration_reference() -> None:
    text = (DOCS / "configuration.md").read_text()
    names = [*cfgmod._SCALARS, *cfgmod._LISTS, "specs", *cfgmod.SECTIONS]
    missing = [n for n in names if f"`{n}`" not in text]
    assert not missing, f"document these settings in docs/configuration.md: {missing}"
    run = build_parser()._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    flags = [s for a in run._actions for s in a.option_strings if s.startswith("--") and s != "--help"]
    missing = [f for f in flags if f"`{f}" not in text]
    assert not missing, f"document these flags in docs/configuration.md: {missing}"
