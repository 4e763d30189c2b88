"""COVID-QA's papers as a team's document folder: one .txt per paper, for `tunewise pilot --documents`.

COVID-QA (../shared/datasets/rag) ships in the SQuAD layout, each paper the `context` of its questions. A team
with such a use case has the papers as files and the question-answer pairs apart; this writes the first, and
`tunewise data prepare covidqa_200423.json --map prompt=question,completion=answer --group-by document_id` makes
the second (questions without their paper, test questions on papers the train split never saw).

    python bench/covidqa_documents.py ../shared/datasets/rag/covidqa_200423.json OUT_DIR
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path


def write_documents(squad_json: Path, out_dir: Path) -> int:
    articles = json.loads(squad_json.read_text(encoding="utf-8"))["data"]
    out_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    for number, article in enumerate(articles):
        text = "\n\n".join(p["context"] for p in article.get("paragraphs", []) if p.get("context"))
        if not text.strip():
            continue
        slug = re.sub(r"[^a-z0-9]+", "-", str(article.get("title") or number).lower()).strip("-")[:60]
        (out_dir / f"{number:03d}-{slug or 'paper'}.txt").write_text(text, encoding="utf-8")
        written += 1
    return written


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    count = write_documents(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"{count} documents written to {sys.argv[2]}")
