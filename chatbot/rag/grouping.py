"""Sources grouped per document: the retrieved chunks of one document (and page) become one source.

Five chunks of one guide page used to be five sources [1]..[5] of one document; now a citation [n] names a
document. Chunks of a paged document (PDF, slides) are grouped per page, so that the source's page is the
page of whatever sentence the answer quotes from it: the sources event goes out before the answer is
written, and a chunk is never on two pages (the chunker cuts at page boundaries), so a source per
(document, page) is the only way its page can be exact. The widget lists the pages of one document under
it. A group takes the place of its best chunk (sources stay in retrieval order) and keeps its score,
heading path and chunk index; its text is the chunks' texts in document order, overlaps removed (chunk
spans overlap by up to the chunker's overlap), and its character span covers them.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from chatbot.events import Source


def group_by_document(sources: Sequence[Source]) -> list[Source]:
    """One source per (document, page), numbered [1].. in the order of each group's best chunk."""
    groups: dict[tuple[str, int | None, int | None], list[Source]] = {}
    for source in sources:
        key = (source.doc_id or source.source, source.page_start, source.page_end)
        groups.setdefault(key, []).append(source)
    return [_merge(n, members) for n, members in enumerate(groups.values(), start=1)]


def _merge(n: int, members: list[Source]) -> Source:
    best = members[0]
    ordered = sorted(members, key=lambda s: (s.chunk_index, s.char_start or 0))
    starts = [s.char_start for s in ordered if s.char_start is not None]
    ends = [s.char_end for s in ordered if s.char_end is not None]
    return Source(
        n=n,
        doc_id=best.doc_id,
        source=best.source,
        title=best.title,
        heading_path=best.heading_path,
        chunk_index=best.chunk_index,
        text=_joined(ordered),
        score=max(s.score for s in members),
        page_start=best.page_start,
        page_end=best.page_end,
        char_start=min(starts) if len(starts) == len(ordered) else best.char_start,
        char_end=max(ends) if len(ends) == len(ordered) else best.char_end,
    )


def _joined(ordered: list[Source]) -> str:
    """The texts in document order; where a chunk's span overlaps the previous one's, only its new part."""
    parts = [ordered[0].text]
    for previous, current in itertools.pairwise(ordered):
        text = current.text
        if (
            previous.char_end is not None
            and current.char_start is not None
            and previous.char_start is not None
            and previous.char_start <= current.char_start < previous.char_end
        ):
            overlap = previous.char_end - current.char_start
            if text[:overlap] == previous.text[len(previous.text) - overlap :]:
                parts[-1] += text[overlap:]
                continue
        parts.append(text)
    return "\n\n".join(parts)
