"""docs/security.md stays in step with the code: every setting row, every check."""

from __future__ import annotations

import re

from pgsteady.cli.security import settings_markdown
from pgsteady.security.runner import CHECKS

from ..helpers import ROOT

DOC = ROOT / "docs" / "security.md"


def test_every_setting_row_appears_in_docs_security_md_with_its_default():
    text = DOC.read_text()
    block = re.search(r"<!-- settings:start -->\n(.*?)<!-- settings:end -->", text, re.S).group(1)
    missing = [line for line in settings_markdown().splitlines() if line not in block.splitlines()]
    assert not missing, (
        "docs/security.md is out of step with pgsteady/security/settings.py; run "
        "`pgsteady security settings --markdown` and paste its table between the settings markers. "
        f"Missing or changed rows: {missing}")


def test_every_check_of_the_checklist_is_documented():
    text = DOC.read_text()
    documented = set(re.findall(r"^\| `(\w+)` \|", text, re.M))
    names = [name for name, _ in CHECKS]
    assert set(names) <= documented, sorted(set(names) - documented)
