"""A ROMFS partition as the firmware mounts it: at /rom before `_boot.py`, "/rom" and "/rom/lib"
on sys.path ahead of "/lib" (py/runtime.c mp_init, ports/esp32/main.c), `.mpy` bytecode run in
place (no heap for the code), and a partition without an image skipped silently."""
import subprocess

from mpota import mpy, provision
from mpota import romfs as romfs_image

# A module with enough code that copying its bytecode into the heap shows.
MODULE = "\n".join("def f%d(a, b):\n    return [a + b * %d for _ in range(3)]\n" % (i, i) for i in range(60))

MAIN = """
import gc, sys
gc.collect()
before = gc.mem_alloc()
import romdemo
gc.collect()
print("file", romdemo.__file__)
print("heap", gc.mem_alloc() - before)
print("path", " ".join(p for p in sys.path if not p.startswith("/.sim")))
"""


def _compiled(tmp_path, name, source):
    src = tmp_path / (name + ".py")
    src.write_text(source)
    out = tmp_path / (name + ".mpy")
    subprocess.run([mpy.mpy_cross(), "-o", str(out), str(src)], check=True)
    return out.read_bytes()


def _report(console):
    return dict(line.split(" ", 1) for line in console.splitlines() if line.split(" ", 1)[0] in ("file", "heap", "path"))


def test_rom_lib_comes_before_lib_and_its_bytecode_takes_no_heap(sim_device, firmware, tmp_path):
    code = _compiled(tmp_path, "romdemo", MODULE)
    tree = tmp_path / "rom"
    (tree / "lib").mkdir(parents=True)
    (tree / "lib" / "romdemo.mpy").write_bytes(code)
    image = romfs_image.image(tree)
    files = {"main.py": MAIN, "lib/romdemo.mpy": code}  # the same module in /lib too: /rom/lib wins
    in_rom = _report(sim_device(firmware("1.0.0"), files, romfs=image).run())
    assert in_rom["file"] == "/rom/lib/romdemo.mpy"
    assert in_rom["path"] == " .frozen /rom /rom/lib /lib"
    from_fs = _report(sim_device(firmware("1.0.0"), files).run())
    assert from_fs["file"] == "/lib/romdemo.mpy"
    assert from_fs["path"] == " .frozen /lib"
    # The bytecode (about 40 bytes a function) stays in flash; function objects and names remain.
    assert int(in_rom["heap"]) + 60 * 40 < int(from_fs["heap"])


def test_a_blank_romfs_partition_is_skipped_and_the_board_boots(sim_device, firmware):
    device = sim_device(firmware("1.0.0"), {"main.py": "import os, sys\nprint('rom', 'rom' in os.listdir('/'), "
                                                     "'/rom/lib' in sys.path)\n"}, romfs=b"")
    assert "rom False False" in device.run()


def test_a_romfs_image_too_big_for_its_partition_is_refused(firmware, tmp_path):
    from simhost import ROMFS_PARTITIONS, supervisor
    try:
        supervisor.new_device(tmp_path / "f.bin", None, firmware("1.0.0"), table_path=ROMFS_PARTITIONS,
                              romfs=b"\xd2\xcd\x31" + b"\0" * 0x20000)
    except ValueError as exc:
        assert "does not fit" in str(exc)
    else:
        raise AssertionError("an oversized romfs image was written")


def test_provision_puts_the_package_in_the_romfs_image_not_lib(tmp_path):
    out, rom = tmp_path / "stage", tmp_path / "dev.romfs"
    provision.stage(out, config=provision.device_config("dev1", "broker.example:8883", board="esp32-generic"),
                    trust=b"T", credentials={}, arch="xtensawin", romfs=rom)
    assert not (out / "lib" / "ota").exists()
    image = rom.read_bytes()
    assert image[:3] == b"\xd2\xcd\x31"  # ROMFS magic (extmod/vfs_rom.c)
    for name in ("service.mpy", "updater.mpy", "p256.mpy"):
        assert name.encode() in image
    commands = provision.deploy_commands("/dev/ttyUSB0", out, romfs=rom)
    assert commands[0] == ["mpremote", "connect", "/dev/ttyUSB0", "romfs", "deploy", str(rom)]
