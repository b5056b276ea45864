"""ROMFS images of the `ota` package: the format MicroPython mounts at /rom (extmod/vfs_rom.c),
written with mpremote's own builder, so `mpremote romfs deploy` takes the file as it is.

From a ROMFS a board runs `.mpy` bytecode in place from flash: the package's code then takes no
heap, where from the filesystem every module's bytecode is copied into it when imported."""
from pathlib import Path

from mpremote.romfs import VfsRomWriter


def image(folder):
    """The ROMFS image of everything under `folder` (its tree becomes /rom), files in name order."""
    writer = VfsRomWriter()
    _add(writer, Path(folder))
    return bytes(writer.finalise())


def _add(writer, folder):
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            writer.opendir(entry.name)
            _add(writer, entry)
            writer.closedir()
        else:
            writer.mkfile(entry.name, entry.read_bytes())
