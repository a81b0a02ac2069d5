import os, unicodedata, shutil
from tests.scenarios.helpers import World, settle, tree, write, assert_same_trees, lines


def test_ghost_ignored(world: World) -> None:
    a, b = world.pair()
    write(a.folder / "d" / "x.txt", "x\n")
    settle(a, b)
    write(b.folder / "d" / ".DS_Store", "junk")
    shutil.rmtree(a.folder / "d")
    print(settle(a, b))
    print(tree(a.folder), tree(b.folder))
