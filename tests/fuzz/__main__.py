"""Run one fuzz target under atheris (coverage-guided, libFuzzer):

    python -m tests.fuzz TARGET [--out DIR] [libFuzzer options...]

TARGET is one of ``tests.fuzz.targets.TARGETS``. The run starts from the seed
corpus ``tests/fuzz/corpus/TARGET`` (never written to) and writes the new
inputs it finds, and any crashing input (``crash-*``), to DIR (default: a new
temporary directory). Unless given, it uses ``-max_len`` from ``MAX_LEN``, the
dictionary ``tests/fuzz/TARGET.dict`` if there is one, and ``-timeout=10``
(an input that runs longer counts as a crash). Exit status 0: no crash.
Examples: ``-runs=20000 -seed=1`` (bounded, repeatable), ``-max_total_time=600``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
# Longest input per target: paths room for pairs of long paths, commits for a
# few ops with long paths.
MAX_LEN = {"frames": 4096, "commit": 8192, "paths": 12288}


def args_for(target: str, out: Path, extra: list[str]) -> list[str]:
    """libFuzzer's command line for ``target``."""
    given = {a.split("=", 1)[0] for a in extra if a.startswith("-")}
    args = list(extra)
    if "-max_len" not in given:
        args.append(f"-max_len={MAX_LEN[target]}")
    if "-timeout" not in given:
        args.append("-timeout=10")
    if "-artifact_prefix" not in given:
        args.append(f"-artifact_prefix={out}/")
    if "-dict" not in given and (HERE / f"{target}.dict").exists():
        args.append(f"-dict={HERE / f'{target}.dict'}")
    return [*args, str(out), str(CORPUS / target)]


def main(argv: list[str]) -> int:
    names = tuple(MAX_LEN)
    if len(argv) < 2 or argv[1] not in names:
        print(__doc__, file=sys.stderr)
        print("targets: " + ", ".join(names), file=sys.stderr)
        return 2
    target, rest = argv[1], argv[2:]
    out: Path | None = None
    if "--out" in rest:
        i = rest.index("--out")
        out = Path(rest[i + 1])
        del rest[i : i + 2]
    if out is None:
        out = Path(tempfile.mkdtemp(prefix=f"linesync-fuzz-{target}-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"fuzzing {target}: new inputs and crashes go to {out}", file=sys.stderr, flush=True)
    with atheris.instrument_imports(include=["linesync"]):
        from tests.fuzz.targets import TARGETS
    atheris.Setup([argv[0], *args_for(target, out, rest)], TARGETS[target])
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
