"""Error messages and DAG docs that send people to a section of the README or of docs/*.md
("see README, 'Settings'") name a section that exists: a heading (or its words before a
parenthesis: 'Decoding' for "Decoding (`core/decode/`)"), or a bold paragraph label."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# A section in double quotes may hold an apostrophe ("Freshness: Airflow's settings"); one in single quotes not.
REFERENCE = re.compile(r"""(README|docs/[\w-]+\.md),\s*(?:"\s*"\s*)?(?:"([^"\n]{2,60})"|'([^'\n]{2,60})')""")


def _sections(doc: Path) -> set[str]:
    text = doc.read_text()
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", text, flags=re.MULTILINE)
    labels = re.findall(r"\*\*([^*\n]+?)\*\*", text)
    names = {h.strip().strip("`") for h in headings + labels}
    return names | {n.split(" (", 1)[0] for n in names}


def _references() -> list[tuple[str, str, str]]:
    found = []
    for folder in ("plugins", "dags", "local"):
        for source in sorted((REPO / folder).rglob("*.py")):
            # Messages are often split over adjacent string literals: join them before matching.
            text = re.sub(r"""["']\s*\n\s*f?["']""", "", source.read_text())
            for doc, double, single in REFERENCE.findall(text):
                section = double or single
                found.append((str(source.relative_to(REPO)), doc, section))
    return found


def test_every_section_a_message_points_to_exists() -> None:
    # GIVEN every "<README or docs/x.md>, '<section>'" in the code
    references = _references()
    assert any(section == "Settings" for _, _, section in references), "the settings errors' reference not seen"
    # THEN each names a section of that document
    missing = []
    for source, doc, section in references:
        path = REPO / ("README.md" if doc == "README" else doc)
        if not path.is_file() or section not in _sections(path):
            missing.append(f"{source}: {doc}, '{section}'")
    assert missing == []
