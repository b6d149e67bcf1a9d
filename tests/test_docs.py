"""The documentation: the MkDocs site builds with --strict, the README's links into docs/ resolve,
the file and test names the pages cite exist, and no page or module tells the development history."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

# Lines that tell who worked when instead of what the code does (issue 17): "session 6",
# "this session", "work period", "commit 2da99fc", a bare hash in brackets "(eb835a2)".
# Precise enough not to hit code: onnxruntime's `session.run(...)`, hex colours, "Session" classes.
HISTORY = re.compile(
    r"\bsessions?[ -]\d"  # session 6, sessions 5-7, session-3
    r"|\b(?:this|that|next|previous|earlier|later) session\b"
    r"|\bwork periods?\b"
    r"|\bthis PR\b"
    r"|\bcommits? [0-9a-f]{7,40}\b"  # commit 2da99fc
    r"|\((?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,12}\)",  # (eb835a2): a short hash with letters and digits
    re.IGNORECASE,
)


def history_lines(paths: list[Path]) -> list[str]:
    hits = []
    for path in paths:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if HISTORY.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    return hits


def test_history_pattern_is_precise():
    for line in [
        "measured in session 6",
        "sessions 5-7",
        "this session's run",
        "(commit 2da99fc)",
        "the first work period",
        "GRU, session 5 (eb835a2), 0.99",
    ]:
        assert HISTORY.search(line), line
    for line in [
        "session = ort.InferenceSession(model)",
        "self.session.run(names, feed)",
        "color: #3f51b5",
        "(deadbeef)",
        "(1234567)",
        "one session of training",
        "see commit messages",
    ]:
        assert not HISTORY.search(line), line


def test_docs_pages_tell_no_history():
    hits = history_lines(sorted(DOCS.rglob("*.md")))
    assert not hits, "development history in the docs:\n" + "\n".join(hits)


def test_package_code_tells_no_history():
    paths = sorted((ROOT / "recurrent_rl").rglob("*.py")) + sorted((ROOT / "envs").rglob("*.py"))
    hits = history_lines(paths)
    assert not hits, "development history in the code:\n" + "\n".join(hits)


def test_readme_tells_no_history():
    hits = history_lines([ROOT / "README.md"])
    assert not hits, "development history in README.md:\n" + "\n".join(hits)


def heading_slugs(page: Path) -> set[str]:
    """The anchors python-markdown's toc extension gives the page's headings (MkDocs' default)."""
    from markdown.extensions.toc import slugify

    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)
    slugs = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, flags=re.MULTILINE):
        plain = re.sub(r"[`*_]", "", re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading))
        slugs.add(slugify(plain, "-"))
    return slugs


def test_readme_links_into_docs_resolve():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\((docs/[^)\s]+)\)", readme) + re.findall(r"""src=["'](docs/[^"']+)["']""", readme)
    broken = []
    for link in links:
        path, _, anchor = link.partition("#")
        target = ROOT / path
        if not target.is_file():
            broken.append(f"{link}: no file {path}")
        elif anchor and target.suffix == ".md" and anchor not in heading_slugs(target):
            broken.append(f"{link}: {path} has no heading with the anchor #{anchor}")
    assert not broken, "README.md links into docs/ that do not resolve:\n" + "\n".join(broken)


def test_files_and_tests_named_in_the_docs_exist():
    """Implementation details and other pages cite `tests/test_x.py::name` and source paths."""
    text = "\n".join(page.read_text(encoding="utf-8") for page in sorted(DOCS.rglob("*.md")))
    missing = []
    for file, name in sorted(set(re.findall(r"(tests/test_\w+\.py)::(\w+)", text))):
        source = ROOT / file
        defined = source.is_file() and re.search(rf"^\s*def {name}\(", source.read_text(encoding="utf-8"), re.MULTILINE)
        if not defined:
            missing.append(f"{file}::{name}")
    cited = re.findall(r"`((?:recurrent_rl|envs|benchmarks|scripts|tests)/[\w/.-]+\.(?:py|c|cpp|sh|yaml))`", text)
    for path in sorted(set(cited)):
        if "*" not in path and not (ROOT / path).is_file():
            missing.append(path)
    assert not missing, "the docs name files or tests that do not exist:\n" + "\n".join(missing)


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    pytest.importorskip("mkdocstrings_handlers.python")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    site = tmp_path / "site"
    for page in ["index.html", "getting-started/index.html", "api/index.html", "bad-inputs/index.html"]:
        assert (site / page).is_file(), page
    assert (site / "images" / "tensorboard.png").is_file()
    # the API reference, one page per package
    documented = {
        "ppo": ["recurrent_rl.ppo.algorithm.RecurrentPPO"],
        "nets": ["recurrent_rl.nets.memory.MemoryCore", "recurrent_rl.nets.policies.RecurrentActorCriticPolicy"],
        "envs": ["recurrent_rl.envs.wrappers.MaskObservation"],
        "supervised": ["recurrent_rl.supervised.encoder.load_encoder"],
        "runs": ["recurrent_rl.config.train.TrainConfig", "recurrent_rl.runs.package.package_run"],
    }
    for page, names in documented.items():
        api = (site / "api" / page / "index.html").read_text(encoding="utf-8")
        for name in names:
            assert f'id="{name}"' in api, f"the API reference's page {page} lacks {name}"
    for api_page in (site / "api").rglob("*.html"):
        assert ":class:`" not in api_page.read_text(encoding="utf-8"), f"a Sphinx role left unconverted in {api_page}"
    home = (site / "index.html").read_text(encoding="utf-8")
    assert 'class="md-source"' in home, "the site has no repository link (repo_url in mkdocs.yml)"
    assert (site / "stylesheets" / "extra.css").is_file()


def test_user_pages_cite_tests_rarely():
    """The user's pages say what the code does; the tests behind it are cited on the development
    pages (implementation details, architecture, bad inputs)."""
    development = {"implementation-details.md", "architecture.md", "bad-inputs.md"}
    counts = {
        page.name: len(re.findall(r"tests/", page.read_text(encoding="utf-8")))
        for page in sorted(DOCS.glob("*.md"))
        if page.name not in development
    }
    assert sum(counts.values()) <= 12, f"user pages cite tests/ {sum(counts.values())} times: {counts}"


def test_cli_synopsis_names_every_command():
    from recurrent_rl.cli.main import build_parser

    parser = build_parser()
    commands = next(action for action in parser._actions if action.dest == "command").choices
    synopsis = (DOCS / "cli.md").read_text(encoding="utf-8").split("## Commands", 1)[1].split("```", 2)[1]
    missing = [name for name in commands if f"recurrent-rl {name}" not in synopsis]
    assert not missing, f"docs/cli.md's synopsis leaves out: {missing}"
