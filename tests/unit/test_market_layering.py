"""market/ sits below agreement.py: the dependency runs one way (issue 10, item 4)."""
from __future__ import annotations

import ast
from pathlib import Path

import golem_sync

ROOT = Path(golem_sync.__file__).parent


def _imports(path: Path) -> set:
    """Every module ``path`` imports (TYPE_CHECKING imports included), as absolute golem_sync names."""
    package = ".".join(("golem_sync", *path.relative_to(ROOT).with_suffix("").parts[:-1]))
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def test_market_does_not_import_the_agreement_module():
    paths = sorted((ROOT / "_market").glob("*.py"))
    assert paths
    for path in paths:
        assert "golem_sync._agreement" not in _imports(path), f"{path.name} imports golem_sync._agreement"


def test_signing_lives_in_market_and_the_old_names_still_import():
    from golem_sync import _agreement as agreement
    from golem_sync._market import signing

    assert "golem_sync._market.signing" in _imports(ROOT / "_agreement.py")
    assert agreement.sign is signing.sign and agreement.release is signing.release
    assert agreement.ReleaseOutcome is signing.ReleaseOutcome


def test_events_and_payment_calls_are_dispatched_by_type_not_by_name():
    import re

    sources = [ROOT / "_agreement.py", ROOT / "_payment" / "processor.py", *(ROOT / "_market").glob("*.py")]
    by_name = re.compile(r"type\(event\)\.__name__|in str\([^)]*event_type\)|getattr\([^)]*\.payment,")
    for path in sources:
        assert not by_name.findall(path.read_text()), path.name
