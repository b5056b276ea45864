"""The simulated NOR flash tears as a chip does when the power goes inside an operation."""
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
