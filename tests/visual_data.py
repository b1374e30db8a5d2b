"""Tiny, separable form images for Visual NER tests: drawn with PIL in matplotlib's DejaVu font,
labelled the way Label Studio exports image regions (`rectanglelabels`, percent of the page).
Some tasks carry their words (`data.ocr`), the others leave them to Tesseract."""

from __future__ import annotations

import json
import random
from pathlib import Path

CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image">
    <Label value="header"/><Label value="question"/><Label value="answer"/>
  </RectangleLabels>
</View>"""
HEADERS = ["ORDER FORM", "APPLICATION FORM", "REQUEST FORM", "CLAIM FORM"]
KEYS = ["Name:", "City:", "Date:", "Phone:", "Company:"]
NAMES = ["Anna Berg", "Boris Cole", "Carla Diaz", "David Evans", "Elena Frost", "Hugo Grant"]
CITIES = ["Paris", "Berlin", "Madrid", "Lisbon", "Vienna", "Dublin"]
COMPANIES = ["Acme Ltd", "Nordwind AG", "Blue River Inc", "Solaris SA"]
WIDTH, HEIGHT = 900, 520


def _font(size: int, bold: bool = False):
    import matplotlib
    from PIL import ImageFont

    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), size)


def _value(key: str, rng: random.Random) -> str:
    if key == "Name:":
        return rng.choice(NAMES)
    if key == "City:":
        return rng.choice(CITIES)
    if key == "Date:":
        return f"{rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{rng.randint(1990, 2024)}"
    if key == "Phone:":
        return f"{rng.randint(200, 999)} {rng.randint(1000, 9999)}"
    return rng.choice(COMPANIES)


def draw_form(rng: random.Random, path: Path) -> tuple[list[dict], list[dict]]:
    """Draws one form; returns its words ({text, bbox} in pixels) and its labelled regions
    (Label Studio `rectanglelabels` results)."""
    from PIL import Image, ImageDraw

    image = Image.new("L", (WIDTH, HEIGHT), 255)
    draw = ImageDraw.Draw(image)
    words, regions = [], []

    def put(text: str, x: int, y: int, font, label: str) -> int:
        """Write the words of one entity from (x, y); return the x after it."""
        boxes = []
        for token in text.split():
            x0, y0, x1, y1 = draw.textbbox((x, y), token, font=font)
            draw.text((x, y), token, font=font, fill=0)
            words.append({"text": token, "bbox": [x0, y0, x1, y1]})
            boxes.append((x0, y0, x1, y1))
            x = x1 + font.size // 2
        x0, y0 = min(b[0] for b in boxes) - 3, min(b[1] for b in boxes) - 3
        x1, y1 = max(b[2] for b in boxes) + 3, max(b[3] for b in boxes) + 3
        regions.append(
            {
                "id": f"r{len(regions)}",
                "from_name": "label",
                "to_name": "image",
                "type": "rectanglelabels",
                "original_width": WIDTH,
                "original_height": HEIGHT,
                "value": {
                    "x": 100 * x0 / WIDTH,
                    "y": 100 * y0 / HEIGHT,
                    "width": 100 * (x1 - x0) / WIDTH,
                    "height": 100 * (y1 - y0) / HEIGHT,
                    "rotation": 0,
                    "rectanglelabels": [label],
                },
            }
        )
        return x

    put(rng.choice(HEADERS), 60 + rng.randint(0, 200), 30, _font(34, bold=True), "header")
    y = 120
    for key in rng.sample(KEYS, 4):
        x = 60 + rng.randint(0, 40)
        end = put(key, x, y, _font(26), "question")
        put(_value(key, rng), max(end + 20, 260) + rng.randint(0, 60), y, _font(26), "answer")
        y += 80 + rng.randint(0, 20)
    image.save(path)
    return words, regions


def write_export(folder: Path, n: int, seed: int = 0, ocr_every: int = 2) -> Path:
    """`n` forms as PNG files and a Label Studio JSON export naming them (`data.image` a file
    name next to the export). Every `ocr_every`-th task carries its words in `data.ocr`."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    tasks = []
    for i in range(n):
        name = f"form_{seed}_{i}.png"
        words, regions = draw_form(rng, folder / name)
        data = {"image": name}
        if ocr_every and i % ocr_every == 0:
            data["ocr"] = words
        tasks.append(
            {
                "id": i + 1,
                "data": data,
                "annotations": [
                    {"id": 5000 + i, "completed_by": 1, "created_at": "2024-01-01T00:00:00Z", "result": regions}
                ],
            }
        )
    path = folder / "export.json"
    path.write_text(json.dumps(tasks))
    return path
