"""Descriptions and examples for every command's ``--help``.

:func:`decorate` walks the finished argparse tree and gives each command
that has none a description and an "examples:" epilog from the table below;
what a command's own parser already says is kept. ``tests/client/test_cli_help.py``
checks that every command of the tree ends up with both.
"""

from __future__ import annotations

import argparse
import textwrap

# command path -> (description, example lines, each run as-is from a shell)
HELP: dict[tuple[str, ...], tuple[str, list[str]]] = {
    (): (
        "Self-hosted file sync: a one-line edit sends about one line. Run a server "
        "(serve, with user, token and namespace to manage it), then sync folders with it "
        "(init, then sync). `linesync COMMAND --help` tells more about each command.",
        [
            "linesync serve --data ~/linesync-data",
            "linesync init ~/Notes --server http://127.0.0.1:8440 --token lst_…",
            "linesync sync ~/Notes --watch",
        ],
    ),
    ("serve",): (
        "Run the server: the HTTP API, on embedded storage (SQLite and pack files under "
        "--data) unless --db and --chunks name PostgreSQL and S3. The first start creates "
        "user 'admin' and prints a token for it.",
        [
            "linesync serve",
            "linesync serve --data /srv/linesync --host 0.0.0.0 --port 8440",
            "linesync serve --config server.toml --limit max_request_decoded=64MiB",
        ],
    ),
    ("user",): (
        "Manage the server's users. Each user has a home namespace of the same name.",
        ["linesync user add alice --data /srv/linesync", "linesync user list"],
    ),
    ("user", "add"): (
        "Create a user and their home namespace.",
        ["linesync user add alice", "linesync user add bob --data /srv/linesync"],
    ),
    ("user", "list"): ("List the server's users, one a line.", ["linesync user list"]),
    ("token",): (
        "Manage device tokens: each device syncs with a token of its own, which can be "
        "read-only, expire, or be revoked.",
        ["linesync token create alice --device laptop", "linesync token list alice"],
    ),
    ("token", "create"): (
        "Create a token for one of a user's devices and print it (only the token on "
        "stdout, for scripts). It is shown once: the server keeps only its hash.",
        [
            "linesync token create alice --device laptop",
            "linesync token create alice --device phone --read-only --expires 90d",
            "linesync token create admin --device prometheus --metrics",
        ],
    ),
    ("token", "revoke"): (
        "Revoke a user's tokens: all of them, or one device's. A revoked token stops "
        "working at once.",
        ["linesync token revoke alice --device phone", "linesync token revoke alice"],
    ),
    ("token", "list"): (
        "List tokens as JSON (never their secret): device, role, times, state.",
        ["linesync token list", "linesync token list alice"],
    ),
    ("namespace",): (
        "Manage namespaces: synced trees that can be shared between users.",
        ["linesync namespace create family --owner alice", "linesync namespace list"],
    ),
    ("namespace", "create"): (
        "Create a shared namespace owned by a user.",
        ["linesync namespace create family --owner alice"],
    ),
    ("namespace", "share"): (
        "Give a user access to a namespace, read-write or read-only.",
        [
            "linesync namespace share family bob",
            "linesync namespace share family carol --read-only",
        ],
    ),
    ("namespace", "unshare"): (
        "Take a user's access to a namespace away.",
        ["linesync namespace unshare family bob"],
    ),
    ("namespace", "list"): (
        "List namespaces and their members, as JSON.",
        ["linesync namespace list"],
    ),
    ("namespace", "reset"): (
        "Erase a namespace's journal and history. Clients notice and sync again from "
        "their folders; nothing on a device is deleted because of it.",
        ["linesync namespace reset family --yes"],
    ),
    ("gc",): (
        "Collect the chunks no version references any more, and compact pack files. "
        "The server also does this by itself.",
        ["linesync gc", "linesync gc --grace 3600 --data /srv/linesync"],
    ),
    ("check",): (
        "Read back every chunk the index names and verify its hash. Exit 1 if any "
        "problem was found.",
        ["linesync check --data /srv/linesync"],
    ),
    ("init",): (
        "Make a folder a linesync folder, syncing one namespace of a server. The folder "
        "may already hold files: the first sync merges them. Its settings (server, token, "
        "namespace) go to FOLDER/.linesync/config.json, readable only by you.",
        [
            "linesync init ~/Notes --server http://127.0.0.1:8440 --token lst_…",
            "linesync init ~/Family --server https://sync.example.org --token lst_… "
            "--namespace family",
        ],
    ),
    ("sync",): (
        "Sync a folder with its server once, or keep it in sync with --watch. Nothing is "
        "lost: concurrent edits merge or become conflict copies, and a deletion of most "
        "of the folder is held back until confirmed.",
        [
            "linesync sync ~/Notes",
            "linesync sync ~/Notes --watch",
            "linesync sync ~/Notes --confirm-deletes",
            "LINESYNC_RETRY_FOR=600 linesync sync ~/Notes -v",
        ],
    ),
    ("status",): (
        "Show what a sync would do now, without doing it.",
        ["linesync status ~/Notes"],
    ),
    ("log",): (
        "List the versions of a path, newest first: when, what, and by which device.",
        ["linesync log ~/Notes recipes/bread.md", "linesync log ~/Notes todo.md --limit 100"],
    ),
    ("restore",): (
        "Bring back an old version of a path (a JID from `linesync log`) as a new "
        "version; nothing is overwritten for good.",
        [
            "linesync restore ~/Notes recipes/bread.md --jid 42",
            "linesync restore ~/Notes old-name.md --jid 17 --copy",
        ],
    ),
    ("conflicts",): (
        "List the conflict copies in a folder: the versions kept when two devices "
        "changed the same file at once.",
        ["linesync conflicts ~/Notes"],
    ),
    ("config",): (
        "The client's settings come from built-in defaults, then the user config file "
        "(TOML, see `linesync config path`), then environment variables (LINESYNC_<NAME>), "
        "then command-line flags. A folder's own settings are in FOLDER/.linesync/config.json.",
        ["linesync config show", "linesync config path"],
    ),
    ("config", "show"): (
        "Print every client setting, its value and where it came from: default, the "
        "config file, an environment variable, or a folder's config. Tokens are masked.",
        ["linesync config show", "linesync config show --folder ~/Notes"],
    ),
    ("config", "path"): (
        "Print where the user config file is looked for ($LINESYNC_CLIENT_CONFIG, else "
        "$XDG_CONFIG_HOME/linesync/config.toml, else ~/.config/linesync/config.toml). It "
        "need not exist.",
        ["linesync config path", 'mkdir -p "$(dirname "$(linesync config path)")"'],
    ),
}

CONFIG_FILE_EXAMPLE = """\
a config file (linesync config path):
  retry_for = 600      # seconds; LINESYNC_RETRY_FOR in the environment
  log_level = "debug"  # the log file; LINESYNC_LOG_LEVEL
"""


def _wrap(text: str) -> str:
    return "\n".join(textwrap.fill(p, 78) for p in text.split("\n\n"))


def walk(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser of the tree with its command path, the top one first."""
    out = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += walk(sub, (*path, name))
    return out


def decorate(parser: argparse.ArgumentParser) -> None:
    for path, p in walk(parser):
        description, examples = HELP.get(path, ("", []))
        if description and (not p.description or path == ()):
            p.description = _wrap(description)
        elif p.description and "\n" not in p.description:
            p.description = _wrap(p.description)
        if examples and not (p.epilog and "\n  linesync " in "\n" + p.epilog):
            lines = "\n".join(f"  {e}" for e in examples)
            extra = "\n" + CONFIG_FILE_EXAMPLE if path == ("config",) else ""
            p.epilog = ((p.epilog + "\n\n") if p.epilog else "") + f"examples:\n{lines}\n{extra}"
        p.formatter_class = argparse.RawDescriptionHelpFormatter
