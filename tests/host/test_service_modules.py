"""The service holds the updater's code only while a release is in hand: an idle board has not
loaded the verifier, the trust keys, the manifest parser or the freshness rules, nor (after a
boot that was not a trial) the trial bookkeeping and the records it reads; a refused manifest
unloads them again; and the next release is still fetched, verified and installed."""
from e2e_env import Fleet


def test_the_updater_is_loaded_for_a_release_and_unloaded_after(tmp_path, mosquitto, sim_device):
    fleet = Fleet(tmp_path, mosquitto(), sim_device)
    board = fleet.board("lazy-1", app="modules_app.py")
    board.start()
    board.wait_for("^HELD connected -$")  # idle: none of them, the settings' checks included
    other, image = fleet.signer.release("2.0.0", {"fw": "def start():\n    pass\n"}, counter=2, size=64 * 1024,
                                        board="another-board")
    assert fleet.publish(other, image).returncode == 0
    board.wait_for("^HELD rejected -$")  # checked (wrong_board), then unloaded
    blob, image = fleet.signer.release("2.0.0", {"fw": "def start():\n    pass\n"}, counter=2, size=64 * 1024)
    assert fleet.publish(blob, image).returncode == 0
    board.wait_for("^AT offered ota.updater ota.manifest ota.p256 ota.trust ota.freshness ota.store ota.progress "
                   "ota.slot$")
    states = fleet.wait_state(lambda s: (s.get("lazy-1") or {}).get("version") == "2.0.0"
                              and s["lazy-1"].get("state") == "idle", timeout=180)
    assert states["lazy-1"]["slot"] == "ota_1" and states["lazy-1"]["reason"] is None
    assert board.read_partition("ota_1")[:len(image)] == image
