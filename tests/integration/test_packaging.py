"""`make dist`'s wheel: installing it gives both commands, with the web
interface's templates and assets inside; `linesync-server` is `linesync serve`."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_the_wheel_installs_both_commands_and_carries_its_files(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", str(dist), "."],
        cwd=ROOT,
        check=True,
        timeout=300,
    )
    (wheel,) = dist.glob("linesync-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        entry = next(n for n in names if n.endswith("entry_points.txt"))
        scripts = z.read(entry).decode()
    assert "linesync = linesync.cli.main:main" in scripts
    assert "linesync-server = linesync.cli.server_entry:main" in scripts
    assert "linesync/py.typed" in names
    assert any(n.startswith("linesync/server/web/templates/") for n in names), sorted(names)
    assert any(n.startswith("linesync/server/web/static/") for n in names), sorted(names)
    # Installed into a venv of its own (without dependencies: only the commands
    # are checked here; the rest of the suite runs the code). Not with --prefix:
    # pip would first uninstall the linesync of the environment running it.
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(env_dir / "bin" / "python"), "install",
         "-q", "--no-deps", str(wheel)],
        check=True,
        timeout=300,
    )  # fmt: skip
    assert (env_dir / "bin" / "linesync").exists()
    assert (env_dir / "bin" / "linesync-server").exists()


def test_linesync_server_is_linesync_serve() -> None:
    code = (
        "import sys; sys.argv = ['linesync-server', '--help'];"
        "from linesync.cli.server_entry import main; raise SystemExit(main())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "usage: linesync serve" in out.stdout, out.stdout
    assert "--db URL" in out.stdout
