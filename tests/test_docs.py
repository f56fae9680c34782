"""The README is a short entry point and every relative link in the docs resolves."""

import re

import pytest

from tests.conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# [text](target) and [label]: target, not inside `code`; URLs and mail links are external.
INLINE = re.compile(r"(?<!\\)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.MULTILINE)


def relative_links(text: str) -> list[str]:
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)  # code blocks
    text = re.sub(r"`[^`\n]*`", "", text)  # inline code
    links = INLINE.findall(text) + REFERENCE.findall(text)
    return [link for link in links if not re.match(r"^([a-z]+:|#|<)", link)]


def test_relative_links_are_found():
    text = "see [a](docs/a.md#x), [b](https://x.org), `[c](no.md)`, [d](#top)\n[e]: ../f.md\n"
    assert relative_links(text) == ["docs/a.md#x", "../f.md"]


@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_every_relative_link_points_to_a_file(page):
    links = relative_links(page.read_text())
    for link in links:
        target = (page.parent / link.split("#")[0]).resolve()
        assert target.exists(), f"{page.name}: {link} -> {target}"
        assert REPO in target.parents or target == REPO, (
            f"{page.name}: {link} leaves the repository"
        )


def test_the_readme_is_an_entry_point():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    assert readme.index("make demo") < readme.index("## ")  # the two commands come first
    assert "make test" in readme.split("## ")[0]
    for page in ("experiments", "data", "metric-learning", "transfer", "scaling"):
        assert f"(docs/{page}.md)" in readme, page
    for page in ("troubleshooting", "contributing"):
        assert f"(docs/{page}.md)" in readme, page
    # The demo table sits between the markers `make results-tables` rewrites.
    assert readme.count("<!-- results:demo -->") == 1
    assert readme.index("<!-- results:demo -->") < readme.index("<!-- /results:demo -->")


def test_nothing_in_the_repository_depends_on_the_folder_beside_it():
    """Users' clones have no shared folder beside them: no file may read or link one."""
    outside = "../" + "shared"
    files = [REPO / "Makefile", REPO / "pyproject.toml", *DOCS]
    for folder in ("lab", "tests", "experiments", "results"):
        files += [
            p for p in (REPO / folder).rglob("*") if p.suffix in {".py", ".yaml", ".md", ".csv"}
        ]
    found = [str(p.relative_to(REPO)) for p in files if outside in p.read_text(errors="replace")]
    assert found == []
    parent_shared = '"' + "shared" + '" /'  # the Python spelling of a path into it
    assert not [p for p in files if p.suffix == ".py" and parent_shared in p.read_text()]
