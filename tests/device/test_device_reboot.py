"""The OTA cycle on the board (needs --allow-reboot): copy the running image to the next slot,
set_boot(), reset; unconfirmed it rolls back at the next reset; confirmed it stays."""
import pytest


@pytest.mark.esp32
@pytest.mark.reboot
def test_set_boot_reset_rollback_then_confirm(deployed):
    board = deployed
    first, _, second = board.ota_state()
    assert board.run("copy_to_next")["to"] == second

    board.reset()
    assert board.ota_state()[:2] == (second, "PENDING_VERIFY")
    board.reset()  # not confirmed: the bootloader aborts the trial and goes back
    assert board.ota_state()[0] == first

    board.run("copy_to_next")
    board.reset()
    assert board.ota_state()[:2] == (second, "PENDING_VERIFY")
    board.mpremote("exec", "import esp32; esp32.Partition.mark_app_valid_cancel_rollback()")
    assert board.ota_state()[:2] == (second, "VALID")
    board.reset()
    assert board.ota_state()[:2] == (second, "VALID")
    if board.virtual:
        causes = [b["cause"] for b in board.virtual.boot_log()]
        assert causes[-4:] == ["HARD_RESET"] * 4
