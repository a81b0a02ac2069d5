"""`make bench-peers`: linesync side by side with rsync, Unison and Syncthing on
127.0.0.1, every connection through a byte-counting proxy.

Run: `.venv/bin/python -m bench.peers [--quick] [--runs N] [--only SCENARIO,...]
[--tools linesync,rsync,unison,syncthing] [--scale N] [--slow] [--out docs/BENCHMARKS.md]`.
"""
