"""The wrong file is refused on the host: provisioning wants a full firmware (bootloader,
partition table with two OTA slots, app), a release wants an app image that fits the slot;
a renamed file of the other kind, a text file or an oversized image never reaches a board."""
import pytest

import flashimage
from mpota import fwimage, imagecheck
from mpota.cli import main
from mpota.pki import PKI

SLOT = 0x180000


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.err.strip()


@pytest.fixture
def files(tmp_path):
    app = fwimage.build_image("1.24.0", {})
    paths = {"app": app, "full": flashimage.full_image(app), "text": b"hello\n",
             "big": fwimage.build_image("1.25.0", {}, size=SLOT + 0x10000),
             "no-ota": flashimage.full_image(app, partitions=flashimage.table(slots=((0x10, 0x10000, 0x180000),),
                                                                              otadata=False)),
             "too-big-flash": flashimage.full_image(app, partitions=flashimage.table(
                 slots=((0x10, 0x10000, 0x200000), (0x11, 0x210000, 0x200000)))),
             "bootloader": flashimage.esp_image(b"bootloader" * 100)}
    corrupt = bytearray(app)
    corrupt[100] ^= 1
    paths["corrupt"] = bytes(corrupt)
    for name, data in paths.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "ESP32_GENERIC-OTA.bin").write_bytes(app)  # an app image renamed as the full firmware
    (tmp_path / "ca.pem").write_bytes(PKI(tmp_path / "pki").ca_file.read_bytes())
    assert main(["keygen", "--out", str(tmp_path / "k.pem"), "--trust", str(tmp_path / "t.bin"),
                 "--no-password"]) == 0
    return tmp_path


def test_full_image_checks():
    assert imagecheck.check_full_image(flashimage.full_image(), 0x1000) == SLOT
    assert imagecheck.check_full_image(flashimage.full_image(flash_offset=0), 0) == SLOT


@pytest.mark.parametrize("name, words", [
    ("ESP32_GENERIC-OTA.bin", "is an app image"),
    ("app", "is an app image"),
    ("text", "not a full ESP32 firmware"),
    ("no-ota", "two OTA app slots"),
    ("too-big-flash", "does not fit the 4 MiB flash"),
])
def test_provision_refuses_what_is_not_a_full_firmware(files, capsys, name, words):
    code, err = cli(capsys, "provision", "--device-id", "d1", "--trust", files / "t.bin", "--broker", "h:8883",
                    "--ca", files / "ca.pem", "--port", "/dev/ttyUSB0", "--firmware", files / name, "--dry-run",
                    "--out", files / "stage")
    assert code == 2 and err.startswith("error: ") and words in err and str(files / name) in err, err
    assert "\n" not in err


def test_full_image_whose_app_is_corrupt(files):
    with pytest.raises(imagecheck.ImageError, match="checksum"):
        imagecheck.check_full_image(flashimage.full_image(files.joinpath("corrupt").read_bytes()), 0x1000)


def manifest(capsys, files, name, *extra):
    return cli(capsys, "manifest", files / name, "--board", "esp32-generic", "--version", "1", "--counter", 1,
               "--pub", files / "k.pub.pem", "-o", files / "r.tbs", *extra)


@pytest.mark.parametrize("name, words", [
    ("text", "not an ESP32 image"),
    ("big", "larger than the 1572864-byte app slot"),
    ("full", "full flash image"),
    ("corrupt", "checksum"),
    ("bootloader", "without an app descriptor"),
])
def test_manifest_refuses_what_the_board_would_refuse(files, capsys, name, words):
    code, err = manifest(capsys, files, name)
    assert code == 2 and words in err and str(files / name) in err, err
    assert not (files / "r.tbs").exists()


def test_manifest_accepts_an_app_image_and_a_slot_size(files, capsys):
    assert manifest(capsys, files, "app")[0] == 0
    assert manifest(capsys, files, "big", "--slot-size", "0x200000")[0] == 0
