"""The README is the way in: what and why, the two commands, one quick start whose steps name what
exists, and links that all lead somewhere. What it used to hold lives in docs/ (checked by
tests/unit/test_docs.py, tests/unit/test_support_matrix.py and test_docs_snippets.py)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")
_BASH = re.compile(r"^```bash\n(?P<code>.*?)^```", re.M | re.S)


def anchors(page: Path) -> set[str]:
    """GitHub's (and MyST's) anchors of a Markdown page's headings, plus its explicit ``(name)=`` targets."""
    text = page.read_text(encoding="utf-8")
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)  # headings only, not comments in code
    found = set(re.findall(r"^\((?P<name>[\w-]+)\)=$", text, re.M))
    for heading in re.findall(r"^#{1,6} (.+)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def test_the_readme_is_short_and_says_what_and_why():
    assert len(README.splitlines()) < 150
    assert README.startswith("# airflow-provider-cm\n")
    assert "UiPath Communications Mining" in README and "Why a provider" in README


def test_the_two_commands_come_first():
    first = _BASH.search(README)
    assert first, "no bash block"
    commands = [line.split("#")[0].strip() for line in first.group("code").splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for target in ("demo", "test", "docs", "lint", "bench", "test-system"):
        assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"the Makefile has no {target} target"


def test_the_quick_start_names_example_dags_and_settings_that_exist():
    quick = README[README.index("## Quick start") :]
    code = _BASH.search(quick).group("code")
    dags = re.findall(r"airflow dags test (\w+)", code)
    assert dags == ["cm_setup", "cm_upload_comments", "cm_nightly_export"]
    for dag in dags:
        source = (ROOT / "example_dags" / f"{dag}.py").read_text(encoding="utf-8")
        assert f'dag_id="{dag}"' in source
    # The connection ids the quick start exports are the ones the example DAGs read by default.
    nightly = (ROOT / "example_dags" / "cm_nightly_export.py").read_text(encoding="utf-8")
    assert '"CM_WAREHOUSE_CONN_ID", "cm_warehouse"' in nightly and "AIRFLOW_CONN_CM_WAREHOUSE=" in code
    assert "AIRFLOW_CONN_COMMUNICATIONS_MINING_DEFAULT=" in code
    for line in code.splitlines():
        if line.startswith("python -m airflow_provider_cm.emulator"):
            args = shlex.split(line.rstrip("&"))
            assert args[args.index("--token") + 1] == "my-local-token"


def test_every_link_of_the_readme_leads_somewhere():
    targets = [m.group("target") for m in _LINK.finditer(README)]
    local = [t for t in targets if not re.match(r"https?://", t)]
    assert len(local) >= 20, local  # the README hands over to the docs
    for target in local:
        path, _, anchor = target.partition("#")
        page = ROOT / path
        assert page.exists(), f"README links to {target}, which does not exist"
        if anchor:
            assert anchor in anchors(page), f"README links to {target}: no such heading"


def test_every_docs_page_is_reachable_from_the_readme_or_the_docs_index():
    linked = {(ROOT / m.group("target").partition("#")[0]).resolve() for m in _LINK.finditer(README)}
    for page in sorted((ROOT / "docs").glob("*.md")):
        if page.resolve() in linked:
            continue
        index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
        assert re.search(rf"^{re.escape(page.stem)}$", index, re.M), f"docs/{page.name}: in no toctree, no README link"
