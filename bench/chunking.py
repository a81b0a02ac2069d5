"""Measure chunking parameters: speed, chunk counts, bytes per edit.

Run with ``.venv/bin/python bench/chunking.py``; prints markdown tables.
Every corpus is generated in memory from fixed seeds, so runs are comparable.
"""

from __future__ import annotations

import os
import platform
import random
import statistics
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from itertools import accumulate

import zstandard

from linesync.core import chunking
from linesync.core.chunking import ChunkParams, chunk_binary, chunk_text
from linesync.core.ids import chunk_id

MB = 1_000_000
ID_BYTES = 32
EDITS = 60  # random one-line edits averaged for case (a)

# --------------------------------------------------------------------------- corpora


_COMMON_TEXT = (
    "the of and to a in is that for it as was with be by on not he this are or his from at "
    "which but have an they you were their one all we can her has there been if more when "
    "will would who so no she other its may these about than into them only some could time "
    "new also two what do first any my now such like our over man me even most made after "
    "should well where just because those through how between each people make many then "
    "file sync note server client folder line edit change version data chunk recipe list"
)
COMMON = _COMMON_TEXT.split(" ")


def _vocabulary(rng: random.Random, size: int) -> tuple[list[str], list[float]]:
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    weights = [12.7, 9.1, 8.2, 7.5, 7.0, 6.7, 6.3, 6.1, 6.0, 4.3, 4.0, 2.8, 2.8]
    weights += [2.4, 2.4, 2.2, 2.0, 2.0, 1.9, 1.5, 1.0, 0.8, 0.2, 0.2, 0.1, 0.1]
    words: set[str] = set()
    while len(words) < size:
        n = max(1, min(14, int(rng.gauss(5.0, 2.5))))
        words.add("".join(rng.choices(letters, weights, k=n)))
    vocab = sorted(words - set(COMMON))
    rng.shuffle(vocab)
    vocab = COMMON + vocab
    zipf = [1.0 / (rank + 1) for rank in range(len(vocab))]
    return vocab, zipf


class _Words:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.vocab, weights = _vocabulary(rng, 6000)
        self.cum = list(accumulate(weights))

    def take(self, k: int) -> list[str]:
        return self.rng.choices(self.vocab, cum_weights=self.cum, k=k)

    def sentence(self) -> str:
        words = self.take(self.rng.randint(6, 28))
        words[0] = words[0].capitalize()
        return " ".join(words) + self.rng.choice(".....?!:")


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(line)
    return lines


def markdown(target: int = 4_000_000, seed: int = 7) -> bytes:
    """Markdown notes: headings, wrapped paragraphs, lists, code, tables, quotes."""
    rng = random.Random(seed)
    w = _Words(rng)
    out: list[str] = []
    size = 0
    idents = w.vocab[100:400]

    def name() -> str:
        return "_".join(rng.choice(idents) for _ in range(rng.randint(1, 2)))

    while size < target:
        start = len(out)
        kind = rng.choices(
            ["h", "p", "ul", "ol", "code", "table", "quote"], [10, 50, 14, 5, 7, 4, 4]
        )[0]
        if kind == "h":
            out.append("#" * rng.choice([1, 2, 2, 3, 3, 3]) + " " + " ".join(w.take(4)).title())
        elif kind == "p":
            # hard-wrapped, or one line per paragraph (soft wrap), as editors do
            text = " ".join(w.sentence() for _ in range(rng.randint(2, 7)))
            out += _wrap(text, rng.choice([72, 80, 100, 100_000, 100_000]))
        elif kind in ("ul", "ol"):
            indent = ""
            for i in range(rng.randint(2, 9)):
                mark = "-" if kind == "ul" else f"{i + 1}."
                indent = rng.choice([indent, indent, "", "  "])
                item = _wrap(w.sentence(), rng.choice([80, 100_000]) - len(indent))
                out.append(f"{indent}{mark} {item[0]}")
                out += [f"{indent}{' ' * (len(mark) + 1)}{line}" for line in item[1:]]
        elif kind == "code":
            out.append("```" + rng.choice(["python", "python", "bash", "", "json", "yaml"]))
            depth = 0
            for _ in range(rng.randint(3, 16)):
                a, b, c = name(), name(), name()
                stmt = rng.choice(
                    [
                        f"{a} = {b}({c}, {rng.randint(0, 999)})",
                        f"def {a}({b}: int, {c}: str) -> None:",
                        f"return {a}.{b}({c})",
                        f"if {a} > {rng.randint(0, 99)} and not {b}:",
                        f"{a}.{b}({c}, {name()}={rng.randint(0, 9)})",
                        f"# {' '.join(w.take(rng.randint(3, 9)))}",
                        "",
                    ]
                )
                out.append("    " * depth + stmt)
                depth = max(0, min(3, depth + (1 if stmt.endswith(":") else rng.choice([0, -1]))))
            out.append("```")
        elif kind == "table":
            cols = rng.randint(2, 5)
            out.append("| " + " | ".join(w.take(cols)) + " |")
            out.append("|" + "---|" * cols)
            for _ in range(rng.randint(2, 12)):
                cells = [" ".join(w.take(rng.randint(1, 4))) for _ in range(cols)]
                out.append("| " + " | ".join(cells) + " |")
        else:
            text = " ".join(w.sentence() for _ in range(rng.randint(1, 3)))
            out += ["> " + line for line in _wrap(text, 76)]
        out.append("")
        size += sum(len(line) + 1 for line in out[start:])
    return "\n".join(out).encode() + b"\n"


def log(target: int = 5_000_000, seed: int = 11) -> bytes:
    """An application log: timestamp, level, thread, message with fields."""
    rng = random.Random(seed)
    w = _Words(rng)
    t = 1_714_000_000_000
    out: list[str] = []
    size = 0
    while size < target:
        t += rng.randint(0, 2500)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 1000)) + f".{t % 1000:03d}Z"
        level = rng.choices(["INFO ", "DEBUG", "WARN ", "ERROR"], [70, 20, 8, 2])[0]
        thread = f"[worker-{rng.randint(1, 16)}]"
        if rng.random() < 0.6:
            path = "/".join(w.take(rng.randint(1, 3)))
            msg = (
                f"{rng.choice(['GET', 'GET', 'POST', 'PUT'])} /api/v1/{path}"
                f" status={rng.choice([200, 200, 200, 201, 304, 404, 500])}"
                f" bytes={rng.randint(0, 99999)} dur={rng.random() * 300:.1f}ms"
                f" req={rng.getrandbits(48):012x}"
            )
        else:
            msg = " ".join(w.take(rng.randint(3, 12))) + f" id={rng.randint(1, 10**6)}"
        line = f"{stamp} {level} {thread} {msg}"
        out.append(line)
        size += len(line) + 1
    return "\n".join(out).encode() + b"\n"


def random_binary(size: int = 4 << 20, seed: int = 5) -> bytes:
    return random.Random(seed).randbytes(size)


# --------------------------------------------------------------------------- measures

Chunker = Callable[[bytes], list[chunking.Chunk]]


def ids_of(data: bytes, chunker: Chunker) -> list[bytes]:
    view = memoryview(data)
    return [chunk_id(view[o : o + n]) for o, n in chunker(data)]


def pieces(data: bytes, chunker: Chunker) -> dict[bytes, bytes]:
    return {chunk_id(data[o : o + n]): data[o : o + n] for o, n in chunker(data)}


@dataclass
class EditCost:
    new_chunks: int
    raw: int
    zstd: int
    zstd_dict: int


_ZSTD = zstandard.ZstdCompressor(level=3)


def edit_cost(old: bytes, new: bytes, chunker: Chunker) -> EditCost:
    """New chunks of ``new`` (absent from ``old``), sent plain and as a delta."""
    before, after = pieces(old, chunker), pieces(new, chunker)
    added = b"".join(data for cid, data in after.items() if cid not in before)
    replaced = b"".join(data for cid, data in before.items() if cid not in after)
    count = sum(1 for cid in after if cid not in before)
    if not added:
        return EditCost(0, 0, 0, 0)
    plain = len(_ZSTD.compress(added))
    if replaced:
        d = zstandard.ZstdCompressionDict(replaced, dict_type=zstandard.DICT_TYPE_RAWCONTENT)
        delta = len(zstandard.ZstdCompressor(level=3, dict_data=d).compress(added))
    else:
        delta = plain
    return EditCost(count, len(added), plain, delta)


def best_time(fn: Callable[[], object], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def edit_line(data: bytes, index: int, rng: random.Random) -> bytes:
    lines = data.split(b"\n")
    line = bytearray(lines[index])
    if len(line) < 4:
        line += b" edited"
    else:
        # change one word-sized run of characters
        at = rng.randrange(len(line) - 3)
        line[at : at + 3] = b"XYZ"
    lines[index] = bytes(line)
    return b"\n".join(lines)


# --------------------------------------------------------------------------- alternative rule


def line_count_rule(divisor: int, min_size: int, max_size: int) -> Chunker:
    """The notes' rule: cut after a line whose crc32 % divisor == 0, at least
    min_size after the last cut (plain "skip" minimum), at most max_size."""

    def chunker(data: bytes) -> list[chunking.Chunk]:
        out: list[chunking.Chunk] = []
        start = pos = 0
        for line in data.split(b"\n"):
            end = min(pos + len(line) + 1, len(data))
            if end - start > max_size and pos > start:
                out.append(chunking.Chunk(start, pos - start))
                start = pos
            if zlib.crc32(line) % divisor == 0 and end - start >= min_size:
                out.append(chunking.Chunk(start, end - start))
                start = end
            pos = end
        if start < len(data):
            out.append(chunking.Chunk(start, len(data) - start))
        return out

    return chunker


# --------------------------------------------------------------------------- report


def kib(n: float) -> str:
    return f"{n / 1024:,.1f} KiB"


def text_rows(md: bytes, lg: bytes) -> list[str]:
    rng = random.Random(99)
    lines = md.split(b"\n")
    edit_at = [
        i
        for i in (rng.randrange(len(lines) // 10, len(lines) * 9 // 10) for _ in range(EDITS * 3))
        if lines[i]
    ][:EDITS]
    mid = next(i for i in range(len(lines) // 2, len(lines)) if len(lines[i]) > 40)
    mid_edit = edit_line(md, mid, random.Random(1))
    top_insert = b"Inserted line at the very top of the file.\n" + md
    log_append = lg + b"2024-04-25T00:00:00.000Z INFO  [worker-1] appended line id=1\n"

    candidates: list[tuple[str, Chunker]] = []
    for p in TEXT_CANDIDATES:
        mark = " **(chosen)**" if p == chunking.TEXT else ""
        label = f"line rule min {p.min_size} / avg {p.avg_size} / max {p.max_size // 1024}K{mark}"
        candidates.append((label, partial(chunk_text, params=p)))
    candidates.append(
        ("notes' rule: crc32 % 32 == 0, skip-min 512, max 32K", line_count_rule(32, 512, 32768))
    )

    rows = [
        "| text rule | MB/s chunk | MB/s chunk+hash | chunks/MB | avg chunk | "
        "blocklist (4 MB md) | log: chunks/MB |",
        "|---|---|---|---|---|---|---|",
    ]
    edit_rows = [
        "| text rule | case | new chunks | new bytes raw | zstd | zstd delta vs replaced |",
        "|---|---|---|---|---|---|",
    ]
    for label, chunker in candidates:
        t_chunk = best_time(partial(chunker, md))
        t_hash = best_time(partial(ids_of, md, chunker))
        n = len(chunker(md))
        n_log = len(chunker(lg))
        rows.append(
            f"| {label} | {len(md) / MB / t_chunk:,.0f} | {len(md) / MB / t_hash:,.0f} | "
            f"{n / (len(md) / MB):,.0f} | {len(md) / n:,.0f} B | {kib(n * ID_BYTES)} | "
            f"{n_log / (len(lg) / MB):,.0f} |"
        )
        costs = [edit_cost(md, edit_line(md, i, random.Random(i)), chunker) for i in edit_at]
        for case, cost in (
            ("(a) one line edited, middle", edit_cost(md, mid_edit, chunker)),
            ("(b) one line inserted at top", edit_cost(md, top_insert, chunker)),
            ("(d) one line appended to 5 MB log", edit_cost(lg, log_append, chunker)),
        ):
            edit_rows.append(
                f"| {label} | {case} | {cost.new_chunks} | {cost.raw:,} B | {cost.zstd:,} B | "
                f"{cost.zstd_dict:,} B |"
            )
        edit_rows.append(
            f"| {label} | (a') {len(costs)} random one-line edits: mean (max) | "
            f"{statistics.mean(c.new_chunks for c in costs):.2f} "
            f"({max(c.new_chunks for c in costs)}) | "
            f"{statistics.mean(c.raw for c in costs):,.0f} B | "
            f"{statistics.mean(c.zstd for c in costs):,.0f} B | "
            f"{statistics.mean(c.zstd_dict for c in costs):,.0f} B "
            f"({max(c.zstd_dict for c in costs):,} B) |"
        )
    return rows + [""] + edit_rows


def binary_rows(blob: bytes) -> list[str]:
    rng = random.Random(3)
    edits = []
    for k in range(16):  # 4 KiB overwritten at 16 places around the middle
        at = len(blob) // 4 + k * (len(blob) // 32) + rng.randrange(4096)
        edits.append(blob[:at] + rng.randbytes(4096) + blob[at + 4096 :])
    rows = [
        "| FastCDC min / avg / max | MB/s chunk | MB/s chunk+hash | chunks/MB | avg chunk | "
        "blocklist (4 MiB) | (c) mean of 16: new chunks | raw | zstd | zstd delta |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in BINARY_CANDIDATES:
        mark = " **(chosen)**" if p == chunking.BINARY else ""

        chunker = partial(chunk_binary, params=p)
        t_chunk = best_time(partial(chunker, blob))
        t_hash = best_time(partial(ids_of, blob, chunker))
        n = len(chunker(blob))
        costs = [edit_cost(blob, e, chunker) for e in edits]
        rows.append(
            f"| {kib(p.min_size)} / {kib(p.avg_size)} / {kib(p.max_size)}{mark} | "
            f"{len(blob) / MB / t_chunk:,.0f} | {len(blob) / MB / t_hash:,.0f} | "
            f"{n / (len(blob) / MB):,.1f} | {kib(len(blob) / n)} | {kib(n * ID_BYTES)} | "
            f"{statistics.mean(c.new_chunks for c in costs):.2f} | "
            f"{statistics.mean(c.raw for c in costs):,.0f} B | "
            f"{statistics.mean(c.zstd for c in costs):,.0f} B | "
            f"{statistics.mean(c.zstd_dict for c in costs):,.0f} B |"
        )
    return rows


def one_line_row() -> str:
    """A 10 MB minified-JSON-like file on one line: FastCDC inside the line."""
    rng = random.Random(13)
    parts = [b"["]
    size = 0
    while size < 10 * MB:
        item = b'{"id":%d,"name":"%s","v":%.4f},' % (
            rng.randrange(10**9),
            rng.randbytes(rng.randint(3, 12)).hex().encode(),
            rng.random(),
        )
        parts.append(item)
        size += len(item)
    data = b"".join(parts) + b"{}]\n"
    t = best_time(lambda: chunking.chunk_ids(data), repeat=3)
    chunks = chunking.chunk(data)
    at = len(data) // 2
    edited = data[:at] + b"7" + data[at + 1 :]
    cost = edit_cost(data, edited, chunking.chunk)
    return (
        f"10 MB one-line JSON-like text file ({len(data):,} B): `chunk_ids` "
        f"{len(data) / MB / t:,.0f} MB/s, {len(chunks) / (len(data) / MB):,.0f} chunks/MB, "
        f"largest chunk {max(c.length for c in chunks):,} B; one byte changed in the middle: "
        f"{cost.new_chunks} new chunk(s), {cost.raw:,} B raw, {cost.zstd_dict:,} B as a delta."
    )


TEXT_CANDIDATES = [
    ChunkParams(256, 1024, 16384),
    ChunkParams(512, 2048, 32768),
    ChunkParams(1024, 4096, 65536),
]
BINARY_CANDIDATES = [
    ChunkParams(4096, 16384, 65536),
    ChunkParams(8192, 32768, 131072),
    ChunkParams(16384, 65536, 262144),
]


def main() -> None:
    md, lg, blob = markdown(), log(), random_binary()
    n_lines, log_lines = md.count(b"\n"), lg.count(b"\n")
    print(f"# Chunking benchmark (FORMAT_VERSION {chunking.FORMAT_VERSION})\n")
    print(
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {sys.version.split()[0]} ({platform.python_implementation()}); "
        "single-threaded, best of 5.\n"
    )
    print(
        f"Corpora: markdown {len(md):,} B, {n_lines:,} lines "
        f"({len(md) / n_lines:.1f} B/line); log {len(lg):,} B, {log_lines:,} lines; "
        f"random binary {len(blob):,} B.\n"
    )
    t_whole = best_time(lambda: chunking.chunk_ids(md))
    print(
        f"Whole pipeline `chunk_ids` (is_text + chunk + BLAKE3) on the markdown file: "
        f"{t_whole * 1000:.1f} ms = **{len(md) / MB / t_whole:,.0f} MB/s**; "
        f"`is_text` alone {len(md) / MB / best_time(lambda: chunking.is_text(md)):,.0f} MB/s.\n"
    )
    print("## Text\n")
    print("\n".join(text_rows(md, lg)))
    print("\n" + one_line_row())
    print("\n## Binary\n")
    print("\n".join(binary_rows(blob)))


if __name__ == "__main__":
    main()
