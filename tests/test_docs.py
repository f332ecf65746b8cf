"""The repository explains itself: no file points outside it for design knowledge, and every
document under ``docs/`` (and every section of ``docs/design.md``) that a file points to exists."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# the two design files that once lived outside the repository (spelled in pieces, so this file passes)
OUTSIDE = ("DESIGN" + ".md", "ISSUE" + "-NOTES")
DOC_REF = re.compile(r"docs/([A-Za-z0-9_.-]+\.md)")
SECTION_REF = re.compile(r"design\.md`?\)?,?\s*§\s*(\d+)")
MD_LINK = re.compile(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)")


def _text_files() -> dict[str, str]:
    """Every file git tracks (or would track: untracked, not ignored) that is text, path → content."""
    try:
        out = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: no file list")
    files = {}
    for rel in sorted(set(out.decode().split("\0")) - {""}):
        path = REPO / rel
        if not path.is_file():
            continue                       # deleted in the working tree
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue                       # binary (images, archives)
        try:
            files[rel] = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
    assert files, "git listed no text files"
    return files


@pytest.fixture(scope="module")
def text_files() -> dict[str, str]:
    return _text_files()


def test_no_file_points_to_design_notes_outside_the_repository(text_files):
    hits = [f"{rel}:{n}: {line.strip()}" for rel, text in text_files.items()
            for n, line in enumerate(text.splitlines(), 1) if any(name in line for name in OUTSIDE)]
    assert not hits, "files cite design notes outside the repository (use docs/design.md):\n" + "\n".join(hits)


def test_every_docs_file_pointed_to_exists(text_files):
    missing = []
    for rel, text in text_files.items():
        for n, line in enumerate(text.splitlines(), 1):
            for name in DOC_REF.findall(line):
                if not (REPO / "docs" / name).is_file():
                    missing.append(f"{rel}:{n}: docs/{name}")
            if rel.startswith("docs/") and rel.endswith(".md"):      # relative links inside docs/
                for target in MD_LINK.findall(line):
                    if "://" not in target and not (REPO / rel).parent.joinpath(target).is_file():
                        missing.append(f"{rel}:{n}: {target}")
    assert not missing, "pointers to documents that do not exist:\n" + "\n".join(missing)


def test_every_design_section_pointed_to_exists(text_files):
    design = (REPO / "docs" / "design.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^## §(\d+) ", design, flags=re.M))
    assert sections >= {str(i) for i in range(1, 7)}, sections
    missing = [f"{rel}:{text.count(chr(10), 0, m.start()) + 1}: §{m.group(1)}" for rel, text in text_files.items()
               for m in SECTION_REF.finditer(text) if m.group(1) not in sections]
    assert not missing, "pointers to sections of docs/design.md that do not exist:\n" + "\n".join(missing)
