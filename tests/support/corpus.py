"""Deterministic test content: markdown-like text, logs, binaries."""

from __future__ import annotations

import random

_WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "for",
    "with",
    "on",
    "that",
    "recipe",
    "salt",
    "pepper",
    "onion",
    "garlic",
    "butter",
    "oil",
    "heat",
    "stir",
    "bake",
    "minutes",
    "until",
    "golden",
    "add",
    "cup",
    "spoon",
    "flour",
    "sugar",
    "egg",
    "milk",
    "config",
    "server",
    "port",
    "path",
    "note",
    "meeting",
    "todo",
    "review",
    "draft",
    "chapter",
    "section",
]


def markdown(size: int, seed: int = 1) -> bytes:
    """About ``size`` bytes of markdown: headings, paragraphs, lists, code."""
    rnd = random.Random(seed)
    out: list[str] = []
    total = 0
    n = 0
    while total < size:
        n += 1
        r = rnd.random()
        if r < 0.05:
            line = "#" * rnd.randint(1, 3) + f" Section {n}: " + " ".join(rnd.choices(_WORDS, k=4))
        elif r < 0.25:
            line = "- " + " ".join(rnd.choices(_WORDS, k=rnd.randint(3, 10)))
        elif r < 0.32:
            line = "    " + f"value_{n} = {rnd.randint(0, 10**6)}  # " + rnd.choice(_WORDS)
        elif r < 0.37:
            line = ""
        else:
            line = " ".join(rnd.choices(_WORDS, k=rnd.randint(8, 16))).capitalize() + "."
        out.append(line)
        total += len(line) + 1
    return ("\n".join(out) + "\n").encode()


def log_lines(size: int, seed: int = 2) -> bytes:
    rnd = random.Random(seed)
    out: list[str] = []
    total = 0
    t = 1_700_000_000
    while total < size:
        t += rnd.randint(0, 3)
        line = (
            f"{t} INFO worker-{rnd.randint(1, 8)} handled request "
            f"id={rnd.getrandbits(48):x} in {rnd.randint(1, 900)}ms"
        )
        out.append(line)
        total += len(line) + 1
    return ("\n".join(out) + "\n").encode()


def random_bytes(size: int, seed: int = 3) -> bytes:
    return random.Random(seed).randbytes(size)


def edit_middle_line(
    data: bytes, text: bytes = b"This line was edited on another device."
) -> bytes:
    lines = data.split(b"\n")
    lines[len(lines) // 2] = text
    return b"\n".join(lines)
