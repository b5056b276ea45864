"""The simulated NOR flash tears as a chip does when the power goes inside an operation."""
import random

import pytest

import plugin_sim  # noqa: F401  (puts the simulator's modules on the path)
import sim_flash


def flash_file(tmp_path, fill=b"\xff"):
    path = tmp_path / "flash.bin"
    path.write_bytes(fill * (4 * sim_flash.SECTOR))
    return sim_flash.Flash(str(path)), path


def words(data):
    return [int.from_bytes(data[i:i + 4], "little") for i in range(0, len(data), 4)]


@pytest.mark.parametrize("seed", range(1, 9))
def test_a_cut_program_leaves_each_word_between_old_and_new(tmp_path, seed):
    flash, path = flash_file(tmp_path)
    new = bytes((i * 37) & 0xFF for i in range(sim_flash.PAGE))
    flash.tear = sim_flash.Tear(2, seed)  # the third page program is cut
    flash.write(0, b"\x00" * (2 * sim_flash.PAGE))
    with pytest.raises(sim_flash.PowerCut):
        flash.write(1024, new + new)
    after = path.read_bytes()
    assert after[:512] == b"\x00" * 512 and after[1024 + 256:1024 + 512] == b"\xff" * 256  # nothing after the cut
    torn = after[1024:1024 + 256]
    for got, want in zip(words(torn), words(new)):
        assert got & want == want  # a bit is cleared only where the new data clears it
    kinds = {"done" if g == w else "untouched" if g == 0xFFFFFFFF else "partial"
             for g, w in zip(words(torn), words(new)) if w != 0xFFFFFFFF}
    assert kinds - {"done"}, "a cut page is never whole"  # seeds 1..8 all leave some word short


def test_a_cut_erase_leaves_a_sector_partly_erased(tmp_path):
    flash, path = flash_file(tmp_path, b"\x00")
    flash.tear = sim_flash.Tear(1, 7)
    with pytest.raises(sim_flash.PowerCut):
        flash.erase(0, 2 * sim_flash.SECTOR)
    after = path.read_bytes()
    assert after[:sim_flash.SECTOR] == b"\xff" * sim_flash.SECTOR
    second = words(after[sim_flash.SECTOR:2 * sim_flash.SECTOR])
    assert 0 < sum(w == 0xFFFFFFFF for w in second) < len(second)
    assert any(w not in (0, 0xFFFFFFFF) for w in second)  # some words half erased
    assert after[2 * sim_flash.SECTOR:] == b"\x00" * 2 * sim_flash.SECTOR


def test_the_cut_calls_the_boards_hook_and_counts_operations(tmp_path):
    flash, _ = flash_file(tmp_path)
    seen, cuts = [], []
    flash.trace = lambda kind, addr: seen.append((kind, addr))

    def cut(kind, addr):
        cuts.append((kind, addr))
        raise SystemExit

    flash.on_cut = cut
    flash.tear = sim_flash.Tear(3, 5)
    flash.erase(0, sim_flash.SECTOR)
    with pytest.raises(SystemExit):
        flash.write(0, b"\x00" * 1024)
    assert seen == [("e", 0), ("p", 0), ("p", 256), ("p", 512)] and cuts == [("p", 512)]
    assert flash.ops == 4 and flash.tear is None


def test_writes_program_nor_pages_wherever_they_start_and_whatever_the_flash_holds(tmp_path):
    """A write lands as old AND new and counts one operation per page it touches, wherever it
    starts, over erased or partly programmed pages (the quick path after an erase: the model test
    below)."""
    flash, path = flash_file(tmp_path)
    model = bytearray(path.read_bytes())
    flash.write(3000, b"\x0f" * 700)  # partly programmed pages for the writes below to land on
    model[3000:3700] = b"\x0f" * 700
    cases = [(0, 4096), (4096 + 100, 1000), (2900, 300), (3500, 2000), (8192, 256), (8192 + 255, 2), (12000, 1)]
    for addr, size in cases:
        data = bytes((addr + i * 131) & 0xFF for i in range(size))
        seen = []
        flash.trace = lambda kind, a: seen.append((kind, a))
        flash.write(addr, data)
        for i, b in enumerate(data):
            model[addr + i] &= b
        pages = list(range(addr - addr % sim_flash.PAGE, addr + size, sim_flash.PAGE))
        assert seen == [("p", max(p, addr)) for p in pages]
    assert path.read_bytes() == bytes(model)


@pytest.mark.parametrize("at", range(6))
def test_a_cut_lands_in_the_planned_page_of_a_multi_page_write(tmp_path, at):
    """Pages before the cut are programmed, the cut one half, the rest untouched: a write into
    erased flash goes to the host file in one piece only when no cut is planned inside it."""
    flash, path = flash_file(tmp_path)
    flash.tear = sim_flash.Tear(at, 3)
    data = bytes(range(256)) * 5 + b"\x00" * 10  # 6 pages from 100: the first and last partial
    with pytest.raises(sim_flash.PowerCut):
        flash.write(100, data)
    after = path.read_bytes()
    start = 100 if at == 0 else 256 * at  # where the cut page program begins
    end = min(256 * (at + 1), 100 + len(data))
    assert after[100:start] == data[:start - 100]  # the pages before the cut are programmed
    assert after[end:100 + len(data)] == b"\xff" * (100 + len(data) - end)  # those after untouched
    torn = after[start:end]
    assert torn != data[start - 100:end - 100]  # seed 3 leaves some word of each of these pages short
    assert all(g & w == w for g, w in zip(torn, data[start - 100:end - 100]))  # only bits to clear went


@pytest.mark.parametrize("seed", range(4))
def test_erases_and_writes_in_any_order_match_a_nor_model(tmp_path, seed):
    """Writes into sectors erased just before take the quick path (one host write); every other
    write, a second one into the same bytes included, must still land as old AND new."""
    rng = random.Random(seed)
    flash, path = flash_file(tmp_path, b"\x5a")
    model = bytearray(path.read_bytes())
    ops = 0
    for _ in range(300):
        if rng.random() < 0.2:
            sector = rng.randrange(4) * sim_flash.SECTOR
            count = rng.randint(1, (4 * sim_flash.SECTOR - sector) // sim_flash.SECTOR)
            flash.erase(sector, count * sim_flash.SECTOR)
            model[sector:sector + count * sim_flash.SECTOR] = b"\xff" * (count * sim_flash.SECTOR)
            ops += count
        else:
            addr = rng.randrange(4 * sim_flash.SECTOR - 1)
            size = rng.randint(1, min(5000, 4 * sim_flash.SECTOR - addr))
            data = bytes(rng.getrandbits(8) for _ in range(size))
            flash.write(addr, data)
            for i, b in enumerate(data):
                model[addr + i] &= b
            ops += (addr % sim_flash.PAGE + size + sim_flash.PAGE - 1) // sim_flash.PAGE
        assert path.read_bytes() == bytes(model)
    assert flash.ops == ops
