"""The session report as a PDF: A4 pages drawn with Pillow at 150 dpi, Pillow's PDF writer.

Pillow is a runtime dependency, so the PDF works on every install (the
Jetson included, where matplotlib's ``report`` extra is usually absent) and
looks the same everywhere. The price is that its text is part of the page
images (not selectable or searchable); the HTML report has it as text.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from PIL import Image, ImageDraw

from pivh_live import DISCLAIMER, __version__
from pivh_live.web.report import ReportData, pil_font, timeline_image

_A4 = (1240, 1754)  # pixels at 150 dpi
_DPI = 150.0


class _Pages:
    """Top-to-bottom layout on A4 page images; a new page when the next block does not fit."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.pages: list[Image.Image] = []
        self.margin = 90
        self.width = _A4[0] - 2 * self.margin
        self.bottom = _A4[1] - 120
        self._new_page()

    def _new_page(self) -> None:
        self.page = Image.new("RGB", _A4, "white")
        self.draw = ImageDraw.Draw(self.page)
        self.pages.append(self.page)
        bar = pil_font(28)
        self.draw.rectangle([0, 0, _A4[0], 64], fill=(17, 17, 17))
        self.draw.text((_A4[0] / 2, 32), DISCLAIMER, fill=(255, 212, 0), font=bar, anchor="mm")
        self.y = 100

    def room(self, height: float) -> None:
        if self.y + height > self.bottom:
            self._new_page()

    def text(self, text: str, size: int = 24, colour: Any = "black", gap: int = 8) -> None:
        font = pil_font(size)
        for line in _wrap(text, font, self.width):
            self.room(size + gap)
            self.draw.text((self.margin, self.y), line, fill=colour, font=font)
            self.y += size + gap

    def table(self, rows: Sequence[tuple[str, str]], size: int = 22) -> None:
        font = pil_font(size)
        key_w = 420
        for key, value in rows:
            lines = _wrap(value, font, self.width - key_w - 20)
            height = max(1, len(lines)) * (size + 6) + 8
            self.room(height)
            self.draw.rectangle([self.margin, self.y, self.margin + self.width, self.y + height],
                                outline=(200, 200, 200))  # fmt: skip
            self.draw.text((self.margin + 8, self.y + 4), key, fill=(60, 60, 60), font=font)
            for i, line in enumerate(lines):
                self.draw.text((self.margin + key_w, self.y + 4 + i * (size + 6)), line,
                               fill="black", font=font)  # fmt: skip
            self.y += height
        self.y += 16

    def image(self, im: Image.Image, width: int, x_offset: int = 0, advance: bool = True) -> int:
        height = round(im.height * width / im.width)
        self.room(height + 10)
        self.page.paste(im.resize((width, height)), (self.margin + x_offset, round(self.y)))
        if advance:
            self.y += height + 10
        return height

    def finish(self) -> list[Image.Image]:
        font = pil_font(20)
        n = len(self.pages)
        for i, page in enumerate(self.pages, start=1):
            d = ImageDraw.Draw(page)
            footer = f"pivh-live session {self.session_id} - {DISCLAIMER}"
            d.text((self.margin, _A4[1] - 70), footer, fill=(90, 90, 90), font=font)
            d.text((_A4[0] - self.margin, _A4[1] - 70), f"page {i} of {n}", fill=(90, 90, 90),
                   font=font, anchor="ra")  # fmt: skip
        return self.pages


def _wrap(text: str, font: Any, width: float) -> list[str]:
    lines: list[str] = []
    for para in str(text).split("\n"):
        line = ""
        for word in _split_long(para.split(" "), font, width):
            trial = f"{line} {word}".strip()
            if line and font.getlength(trial) > width:
                lines.append(line)
                line = word
            else:
                line = trial
        lines.append(line)
    return lines


def _split_long(words: list[str], font: Any, width: float) -> list[str]:
    """Words wider than a line (a hash) cut into pieces that fit."""
    out: list[str] = []
    for word in words:
        while font.getlength(word) > width and len(word) > 1:
            n = len(word)
            while n > 1 and font.getlength(word[:n]) > width:
                n -= 1
            out.append(word[:n])
            word = word[n:]
        out.append(word)
    return out


def report_pdf(data: ReportData) -> bytes:
    """The report as a PDF (A4 page images at 150 dpi, Pillow's PDF writer)."""
    pages = report_pages(data)
    out = io.BytesIO()
    pages[0].save(out, "PDF", save_all=True, append_images=pages[1:], resolution=_DPI,
                  title=f"pivh-live session {data.session_id}", author="pivh-live")  # fmt: skip
    return out.getvalue()


def report_pages(data: ReportData) -> list[Image.Image]:
    """The PDF's pages as images (A4 at 150 dpi)."""
    doc = _Pages(data.session_id)
    doc.text("pivh-live session report", size=44, gap=16)
    doc.text(
        "Research software, not a medical device. Images show the ultrasound image region only. "
        f"Generated {data.generated} by pivh-live {__version__}.",
        size=20,
        colour=(80, 80, 80),
    )
    doc.y += 10
    doc.text("Session", size=30)
    doc.table(data.facts)
    doc.text("Timeline", size=30)
    doc.image(timeline_image(data.timeline, data.findings, (2000, 560)), doc.width)
    doc.text(
        "Grey: P(PIVH) per frame; blue: smoothed P(PIVH); purple: displayed grade (right axis); "
        "red bands: alert; red marks: findings.",
        size=18,
        colour=(80, 80, 80),
    )
    doc.y += 10
    spans = [(f"{a:.2f} s - {b:.2f} s", f"{b - a:.2f} s") for a, b in data.timeline.spans]
    doc.text("Alert spans", size=30)
    doc.table(spans or [("none", "no alert in this session")])
    doc.text("Findings and keyframes", size=30)
    if not data.findings:
        doc.text("No findings.", size=22)
    col_w = (doc.width - 30) // 2
    for i, f in enumerate(data.findings):
        caption = f.caption
        if f.image is None:
            doc.text(caption, size=20)
            continue
        with Image.open(io.BytesIO(f.image)) as im:
            im = im.convert("RGB")
            right = i % 2 == 1
            h = round(im.height * col_w / im.width)
            if not right:
                doc.room(h + 40)
            top = doc.y
            doc.image(im, col_w, x_offset=col_w + 30 if right else 0, advance=False)
            doc.draw.text((doc.margin + (col_w + 30 if right else 0), top + h + 4), caption,
                          fill="black", font=pil_font(18))  # fmt: skip
            if right or i == len(data.findings) - 1:
                doc.y = top + h + 40
    doc.text("Model", size=30)
    doc.table(data.card)
    return doc.finish()
