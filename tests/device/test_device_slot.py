"""Raw flash access to the next update slot through esp32.Partition: erase, write, read back;
the running slot is never touched."""
import pytest


@pytest.mark.esp32
def test_next_slot_erase_write_read_back(deployed):
    r = deployed.run("slot_rw", sectors=4)
    assert r["next"] != r["running"] and r["next"] in ("ota_0", "ota_1")
    assert r["block_size"] == 4096 and r["blocks"] == 1536 * 1024 // 4096
    assert r["erase"] == [0, 0, 0, 0] and r["erased"]
    assert r["written"], "a 4-argument write onto erased flash did not read back"
    assert r["and"], "a 4-argument write over written flash must only clear bits"
    assert r["erase_write"], "a 3-argument write must erase first"
    assert r["offset_read"]
    assert r["running_unchanged"]
