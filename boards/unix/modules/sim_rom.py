"""The ROMFS of a board whose partition table has a "romfs" partition, mounted as the firmware
mounts it before `_boot.py` runs (py/runtime.c mp_init → extmod/vfs.c
mp_vfs_mount_romfs_protected): the partition memory-mapped, a `vfs.VfsRom` over it at /rom,
and "/rom", "/rom/lib" on `sys.path` ahead of "/lib". `.mpy` bytecode there runs in place from
flash and takes no heap.

A board maps the partition with esp_partition_mmap() (ports/esp32/esp32_partition.c,
esp32_partition_get_buffer), outside the MicroPython heap. The unix port has no such memory to
give, so the supervisor reserves it: placeholder environment strings (OTASIM_ROM0, 1...), the
first in the process's environment block, which the kernel places contiguously on the stack.
Their span, found from /proc/self/stat (env_start, proc(5) field 50), is filled with the
partition's bytes at power-on. A board reads the mapping straight from flash; this copy is taken
once per boot, and nothing in the library writes the romfs partition while it runs.
"""
import uctypes
import vfs

import esp32

MARK = b"OTASIM_ROM0="  # the first placeholder; the supervisor puts it first in the environment
PATHS = ("/rom", "/rom/lib")  # what mp_vfs_mount_romfs_protected adds to sys.path
_PIECE = 4096


def _reserved(size):
    """`size` bytes of the reservation, as a bytearray over memory outside the heap."""
    with open("/proc/self/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()  # fields[0] is proc(5) field 3
    start, end = int(fields[47]), int(fields[48])  # env_start, env_end
    if uctypes.bytes_at(start, len(MARK)) != MARK or end - start - len(MARK) < size:
        raise OSError("no memory reserved for the romfs mapping (the supervisor sets OTASIM_ROM*)")
    return uctypes.bytearray_at(start + len(MARK), size)


def mount():
    """Map and mount the romfs partition if the table has one and it holds a ROMFS image:
    True when mounted. A partition without a valid image is skipped silently, as on a board."""
    found = esp32.Partition.find(esp32.Partition.TYPE_DATA, label="romfs")
    if not found:
        return False
    part = found[0]
    size = part.info()[3]
    mapped = _reserved(size)
    view = memoryview(mapped)
    for at in range(0, size, _PIECE):
        part.readblocks(at // _PIECE, view[at:at + _PIECE])
    try:
        vfs.mount(vfs.VfsRom(mapped), "/rom")
    except OSError:
        return False
    return True
