#!/usr/bin/env python3
"""The comparison pipeline for `studio-intake check`: what a short Python script does with
the same mails when it applies no rule at all.

For each .eml: the stdlib `email` parser (policy.default) splits the message and decodes
every attachment; a .docx is opened with python-docx (every paragraph and every table cell's
text read), a .xlsx with openpyxl (every cell of every sheet read), a .zip with zipfile (its
members handled the same way), a photo with Pillow (`Image.open` + size: the header, as the
core reads it; HEIC needs a plugin Pillow does not ship, so it fails to open and is counted).

Usage: python3 bench/python_pipeline.py [--rounds N] FILE_OR_DIR...
Prints the median time per submission over N rounds (default 3) and what it opened.

Install: pip install python-docx openpyxl Pillow
"""

import argparse
import email
import email.policy
import io
import os
import statistics
import sys
import time
import zipfile

import docx
import openpyxl
from PIL import Image

IMAGE_EXT = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".heic", ".heif", ".tif", ".tiff")


def open_file(name, data, counts):
    lower = name.lower()
    try:
        if lower.endswith(".docx"):
            d = docx.Document(io.BytesIO(data))
            n = sum(len(p.text) for p in d.paragraphs)
            for t in d.tables:
                for row in t.rows:
                    for cell in row.cells:
                        n += len(cell.text)
            counts["docx"] += 1
            return n
        if lower.endswith(".xlsx"):
            wb = openpyxl.load_workbook(io.BytesIO(data), data_only=True)
            n = 0
            for ws in wb.worksheets:
                for row in ws.iter_rows(values_only=True):
                    for v in row:
                        if v is not None:
                            n += len(str(v))
            counts["xlsx"] += 1
            return n
        if lower.endswith(".zip"):
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                for info in z.infolist():
                    if not info.is_dir():
                        open_file(info.filename, z.read(info), counts)
            counts["zip"] += 1
            return 0
        if lower.endswith(IMAGE_EXT):
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
            counts["image"] += 1
            return w * h
    except Exception:  # noqa: BLE001 - a file Python cannot open is counted, not fatal
        counts["failed"] += 1
        return 0
    counts["other"] += 1
    return 0


def process(raw, counts):
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    for part in msg.walk():
        if part.is_multipart():
            continue
        name = part.get_filename()
        if not name:
            continue
        data = part.get_payload(decode=True) or b""
        open_file(name, data, counts)


def inputs(paths):
    files = []
    for p in paths:
        if os.path.isdir(p):
            files.extend(os.path.join(p, f) for f in sorted(os.listdir(p)) if f.endswith(".eml"))
        else:
            files.append(p)
    return files


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("paths", nargs="+")
    args = ap.parse_args()
    files = inputs(args.paths)
    if not files:
        sys.exit("no .eml files")
    raws = [open(f, "rb").read() for f in files]
    times = []
    counts = {}
    for _ in range(args.rounds):
        counts = {"docx": 0, "xlsx": 0, "zip": 0, "image": 0, "other": 0, "failed": 0}
        start = time.perf_counter()
        for raw in raws:
            process(raw, counts)
        times.append(time.perf_counter() - start)
    per = statistics.median(times) / len(raws) * 1000
    mb = sum(map(len, raws)) / len(raws) / 1e6
    print(f"python pipeline: {per:.1f} ms per submission (median of {args.rounds} rounds, {len(raws)} mails, {mb:.2f} MB each on average)")
    print("opened per round:", ", ".join(f"{k} {v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
