"""Documents as users have them, generated with the libraries made for each format (tests and bench).

Each maker returns bytes. Every document holds a distinctive fact on a known page, so a test can ask about it
and check the cited document and page.
"""

from __future__ import annotations

import io
import json
import zipfile

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"

FACTS = {
    "report.pdf": ("The blue heron migrates every October to the Camargue marshes.", 3),
    "handbook.docx": ("Expense claims must be filed within forty days of travel.", None),
    "deck.pptx": ("The quarterly revenue of the glacier division rose by eleven percent.", 2),
    "prices.xlsx": ("Molybdenum", None),
    "scan.pdf": ("The lighthouse keeper logs the fog signal hourly.", 1),
}


def text_pdf(pages: int = 4, *, running_header: str = "Shared Manual of Herons", toc: bool = True) -> bytes:
    """A PDF with a running header and footer on every page, a dot-leader TOC, a hyphenated word and a table."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_auto_page_break(False)
    pdf.add_font("dejavu", "", FONT)
    pdf.add_font("dejavu", "B", FONT.replace(".ttf", "-Bold.ttf"))
    pdf.set_font("dejavu", size=11)
    fact, fact_page = FACTS["report.pdf"]
    for number in range(1, pages + 1):
        pdf.add_page()
        pdf.set_xy(10, 8)
        pdf.cell(0, 6, running_header)
        pdf.set_xy(10, 285)
        pdf.cell(0, 6, f"Confidential - page {number}")
        pdf.set_xy(10, 25)
        if number == 2:
            pdf.start_section("Migration")
        if number == fact_page:
            pdf.start_section("Camargue", level=1)
        if number == 1 and toc:
            pdf.cell(0, 8, "Contents", new_x="LMARGIN", new_y="NEXT")
            for i, name in enumerate(("Introduction", "Migration", "Prices"), start=1):
                pdf.cell(0, 7, f"{i} {name} " + ". " * 40 + f"{i + 1}", new_x="LMARGIN", new_y="NEXT")
            continue
        pdf.multi_cell(
            0,
            6,
            f"Section {number} describes the herons of region {number}. " + _filler(number),
            new_x="LMARGIN",
            new_y="NEXT",
        )
        pdf.cell(
            0,
            6,
            f"The wetland survey of region {number} reports careful manip-",
            new_x="LMARGIN",
            new_y="NEXT",
        )
        pdf.cell(0, 6, "ulation of nesting sites by volunteers.", new_x="LMARGIN", new_y="NEXT")
        pdf.multi_cell(0, 6, _filler(number + 100), new_x="LMARGIN", new_y="NEXT")
        if number == fact_page:
            pdf.multi_cell(0, 6, fact, new_x="LMARGIN", new_y="NEXT")
        if number == pages:
            with pdf.table(col_widths=(60, 40)) as table:
                for row in (("Metal", "Price per kg"), ("Tungsten", "31"), ("Cobalt", "33")):
                    cells = table.row()
                    for value in row:
                        cells.cell(value)
    return bytes(pdf.output())


def _filler(seed: int) -> str:
    words = ("reed", "marsh", "tide", "egg", "wing", "nest", "water", "dawn", "fish", "mud", "flight")
    return " ".join(words[(seed * 7 + i * 3) % len(words)] for i in range(60)).capitalize() + "."


def scanned_pdf(text: str | None = None, *, pages: int = 1) -> bytes:
    """A PDF whose pages are images of text (no text layer): what a scanner produces."""
    from PIL import Image, ImageDraw, ImageFont

    text = text or FACTS["scan.pdf"][0]
    font = ImageFont.truetype(FONT, 28)
    images = []
    for number in range(pages):
        page_text = text if number == 0 else f"Page {number + 1} of the log: {text}"
        image = Image.new("L", (1240, 400), 255)
        draw = ImageDraw.Draw(image)
        words, line, y = page_text.split(), "", 40
        for word in words:
            if draw.textlength(line + " " + word, font=font) > 1140:
                draw.text((50, y), line, fill=0, font=font)
                line, y = word, y + 44
            else:
                line = (line + " " + word).strip()
        draw.text((50, y), line, fill=0, font=font)
        images.append(image.convert("RGB"))
    out = io.BytesIO()
    images[0].save(out, "PDF", resolution=150, save_all=True, append_images=images[1:])
    return out.getvalue()


def docx() -> bytes:
    """A Word file with two heading levels, paragraphs and a table."""
    from docx import Document

    document = Document()
    document.add_heading("Staff Handbook", 0)
    document.add_heading("Travel", 1)
    document.add_paragraph("Book trains when the journey is under five hours.")
    document.add_heading("Expenses", 2)
    document.add_paragraph(FACTS["handbook.docx"][0])
    table = document.add_table(rows=3, cols=2)
    for r, row in enumerate((("Item", "Limit"), ("Hotel", "150"), ("Meal", "40"))):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def pptx() -> bytes:
    """A slide deck of three slides with titles and bullet text."""
    from pptx import Presentation

    deck = Presentation()
    bodies = ("Welcome to the annual review.", FACTS["deck.pptx"][0], "Questions and answers.")
    for n, body in enumerate(bodies, start=1):
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = f"Slide title {n}"
        slide.placeholders[1].text = body
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def xlsx(rows: int = 5) -> bytes:
    """A workbook with a header row and some metal prices."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Metals"
    sheet.append(["Metal", "Price per kg", "Supplier"])
    sheet.append(["Molybdenum", 31, "Northern Forge"])
    for i in range(rows):
        sheet.append([f"Alloy {i}", 10 + i, f"Supplier {i}"])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def epub() -> bytes:
    """An EPUB with two chapters."""
    from ebooklib import epub as lib

    book = lib.EpubBook()
    book.set_identifier("id-1")
    book.set_title("River Tales")
    book.set_language("en")
    chapters = []
    for n, body in ((1, "The ferryman counts seven bridges."), (2, "The miller grinds barley at dawn.")):
        chapter = lib.EpubHtml(title=f"Chapter {n}", file_name=f"ch{n}.xhtml", lang="en")
        chapter.content = f"<html><body><h1>Chapter {n}</h1><p>{body}</p></body></html>"
        book.add_item(chapter)
        chapters.append(chapter)
    book.toc = chapters
    book.add_item(lib.EpubNcx())
    book.add_item(lib.EpubNav())
    book.spine = ["nav", *chapters]
    out = io.BytesIO()
    lib.write_epub(out, book)
    return out.getvalue()


def jsonl(records: int = 3) -> bytes:
    """JSON lines, one record per line, with a text field."""
    lines = [
        json.dumps({"id": f"r{i}", "text": f"Record {i} mentions the number {i * 7}."})
        for i in range(records)
    ]
    return "\n".join(lines).encode()


def zip_bomb(member: str = "word/document.xml", size: int = 2 * 1024**3) -> bytes:
    """A docx-shaped ZIP whose one member inflates to ``size`` bytes of zeros (a few MB compressed)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open(member, "w", force_zip64=True) as handle:
            block = b"\0" * (1 << 20)
            for _ in range(size >> 20):
                handle.write(block)
    return out.getvalue()
