import os, unicodedata, shutil
from tests.scenarios.helpers import World, settle, tree, write, assert_same_trees, lines


def test_nfd_roundtrip(world: World) -> None:
    a, b = world.pair()
    nfd = unicodedata.normalize("NFD", "café.txt")
    write(a.folder / nfd, "v1\n")
    settle(a, b)
    write(b.folder / "café.txt", "v2\n")
    print(settle(b, a))
    assert_same_trees(a, b)
    print(os.listdir(a.folder))
    (b.folder / "café.txt").rename(b.folder / "thé.txt")
    print(settle(b, a))
    assert_same_trees(a, b)
    (b.folder / "thé.txt").unlink()
    settle(b, a)
    assert_same_trees(a, b)
    print(os.listdir(a.folder))


def test_folder_case_rename(world: World) -> None:
    a, b = world.pair()
    write(a.folder / "Recipes" / "x.md", "x\n")
    write(a.folder / "Recipes" / "y.md", "y\n")
    settle(a, b)
    (a.folder / "Recipes").rename(a.folder / "recipes")
    print(settle(a, b))
    print(tree(a.folder), tree(b.folder))
    assert_same_trees(a, b)


def test_link_to_file(world: World) -> None:
    a, b = world.pair()
    os.symlink("t", a.folder / "l")
    write(a.folder / "f", "file\n")
    settle(a, b)
    (a.folder / "l").unlink()
    write(a.folder / "l", "now file\n")
    (a.folder / "f").unlink()
    os.symlink("x", a.folder / "f")
    print(settle(a, b))
    assert_same_trees(a, b)


def test_exec_back(world: World) -> None:
    a, b = world.pair()
    write(a.folder / "s.sh", "echo\n")
    os.chmod(a.folder / "s.sh", 0o755)
    settle(a, b)
    assert tree(b.folder)["s.sh"][2]
    os.chmod(b.folder / "s.sh", 0o644)
    settle(b, a)
    assert not tree(a.folder)["s.sh"][2]
    assert_same_trees(a, b)


def test_big_merge(world: World) -> None:
    a, b = world.pair()
    base = lines(30000)
    write(a.folder / "big.md", "".join(base))
    settle(a, b)
    x = list(base); x[100] = "AAA\n"
    y = list(base); y[29000] = "BBB\n"
    write(a.folder / "big.md", "".join(x))
    write(b.folder / "big.md", "".join(y))
    r = settle(a, b)
    print(r)
    t = assert_same_trees(a, b)
    x[29000] = "BBB\n"
    assert t["big.md"][1] == "".join(x).encode()


def test_three_way_conflict(world: World) -> None:
    a, b, c = world.pair("laptop", "desktop", "phone")
    write(a.folder / "m.md", "".join(lines(10)))
    settle(a, b, c)
    for cl, tag in ((a, "A"), (b, "B"), (c, "C")):
        write(cl.folder / "m.md", "".join(lines(10)).replace("line 005", tag))
    settle(a, b, c)
    print(sorted(assert_same_trees(a, b, c)))


def test_temp_seen_by_b(world: World) -> None:
    a, b = world.pair()
    write(a.folder / "e.md", "v1\n")
    settle(a, b)
    write(a.folder / "e.md.tmp", "v2\n")
    settle(a, b)
    os.replace(a.folder / "e.md.tmp", a.folder / "e.md")
    print(settle(a, b))
    assert assert_same_trees(a, b) == {"e.md": ("file", b"v2\n", False)}


def test_dir_to_file_on_b_with_edit(world: World) -> None:
    a, b = world.pair()
    write(a.folder / "d" / "x.txt", "x\n")
    settle(a, b)
    shutil.rmtree(a.folder / "d")
    write(a.folder / "d", "file\n")
    write(b.folder / "d" / "x.txt", "x edited on b\n")
    print(settle(a, b))
    t = assert_same_trees(a, b)
    print(t)
