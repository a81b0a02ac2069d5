import time, random
from tests.scenarios.helpers import World, settle, assert_same_trees, write, ThreadProxy


def test_probe(world: World) -> None:
    a, b = world.pair()
    t0 = time.monotonic()
    rnd = random.Random(1)
    with open(a.folder / "big.bin", "wb") as f:
        for _ in range(25):
            f.write(rnd.randbytes(8 * 2**20))
    print("gen", time.monotonic() - t0)
    t0 = time.monotonic()
    r = a.sync_once()
    print("sync a", time.monotonic() - t0, r)
    t0 = time.monotonic()
    r = b.sync_once()
    print("sync b", time.monotonic() - t0, r)
    t0 = time.monotonic()
    assert_same_trees(a, b)
    print("cmp", time.monotonic() - t0)
