"""``linesync completion bash|zsh|fish``: tab completion of commands, options
and their values, from the argparse tree itself (argcomplete)."""

from __future__ import annotations

import argparse
import os

SHELLS = ("bash", "zsh", "fish")

INSTALL = """\
install it (then open a new shell):
  bash:  linesync completion bash > ~/.local/share/bash-completion/completions/linesync
         (or add  eval "$(linesync completion bash)"  to ~/.bashrc)
  zsh:   linesync completion zsh > "${fpath[1]}/_linesync"
         (or add  eval "$(linesync completion zsh)"  to ~/.zshrc, after compinit)
  fish:  linesync completion fish > ~/.config/fish/completions/linesync.fish

examples:
  linesync completion bash
  linesync completion zsh > ~/.zfunc/_linesync
"""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh or fish)",
        description="Print the script that makes your shell complete linesync's commands, "
        "options and their values with the Tab key.",
        epilog=INSTALL,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("shell", choices=SHELLS, help="the shell to complete in")


def hook(parser: argparse.ArgumentParser) -> None:
    """When the shell asks for completions (argcomplete's protocol, through
    the environment), answer and exit; otherwise do nothing."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    import argcomplete

    argcomplete.autocomplete(parser)


def script(shell: str) -> str:
    from argcomplete.shell_integration import shellcode

    return shellcode(["linesync"], shell=shell)
