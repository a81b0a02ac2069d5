"""Client option values are checked before anything runs, with errors that
say what the right form is (finding 8 and 11 of the audit)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from linesync.cli.main import main as cli_main
from linesync.client.api import Client


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli_main(list(args))
        except SystemExit as exc:  # argparse refuses the value
            rc = int(exc.code or 0)
    return rc, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("init", "F", "--server", "127.0.0.1:8471", "--token", "t"),
         "give it with http:// or https:// in front, like http://127.0.0.1:8471"),
        (("init", "F", "--server", "localhost:8440", "--token", "t"),
         "like http://localhost:8440"),
        (("init", "F", "--server", "ftp://host", "--token", "t"), "http:// or https://"),
        (("init", "F", "--server", "http://", "--token", "t"), "names no host"),
        (("init", "F", "--server", "http://h:70000", "--token", "t"), "port must be a number"),
        (("log", "F", "p", "--limit", "0"), "--limit must be a whole number from 1 to 1000"),
        (("log", "F", "p", "--limit", "-5"), "--limit must be a whole number from 1 to 1000"),
        (("log", "F", "p", "--limit", "1001"), "from 1 to 1000"),
        (("log", "F", "p", "--limit", "ten"), "'ten' is not a whole number"),
        (("restore", "F", "p", "--jid", "0"), "--jid must be a whole number of at least 1"),
        (("sync", "F", "--retry-for", "-1"), "from 0 (no retries)"),
        (("sync", "F", "--retry-for", "nan"), "from 0 (no retries)"),
        (("sync", "F", "--retry-for", "soon"), "'soon' is not a number of seconds"),
    ],
)  # fmt: skip
def test_a_bad_option_value_is_refused_with_the_right_form(
    args: tuple[str, ...], says: str, tmp_path: Path
) -> None:
    folder = str(tmp_path / "F")
    rc, out, err = _cli(*(folder if a == "F" else a for a in args))
    assert rc == 2, (out, err)
    assert says in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "F").exists()


def test_good_values_pass(tmp_path: Path) -> None:
    # A folder that is not a linesync folder: past the options, a clear error.
    rc, _, err = _cli("log", str(tmp_path), "p", "--limit", "1000")
    assert rc == 2 and "is not a linesync folder" in err
    rc, _, err = _cli("sync", str(tmp_path), "--retry-for", "0")
    assert rc == 2 and "is not a linesync folder" in err


def test_the_library_checks_the_url_too(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="like http://127.0.0.1:8471"):
        Client.init(tmp_path / "F", server="127.0.0.1:8471", token="t")
    assert not (tmp_path / "F").exists()
