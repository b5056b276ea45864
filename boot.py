# boot.py: runs first at every boot. On a board with app bundles, select() picks the bundle to
# run (and rolls back one that failed its trial) before anything else is imported; on a board
# without bundles it does nothing. Then, on the first boot of a new firmware or bundle,
# ota.boot() arms the watchdog, so one that hangs, crashes or never confirms is rolled back.
#
# The guard below covers a firmware that cannot run the `ota` package at all (.mpy files of
# another version, a module it lacks): with built-in modules only, it reads the running slot's
# otadata entry and, on a trial boot, arms the watchdog itself, so that firmware rolls back too.
try:
    from ota.bundle_boot import select

    select()
    del select
    import ota

    ota.boot()
except Exception as exc:
    import sys

    sys.print_exception(exc)
    try:
        import esp32

        _esp32 = True
    except ImportError:
        _esp32 = False  # not an ESP32: nothing here can tell a trial boot
    if _esp32:
        import binascii
        import machine
        import struct

        _running = esp32.Partition(esp32.Partition.RUNNING)  # type: ignore[arg-type]  # stub: label only
        _slot = _running.info()[1] - 0x10  # ota_0 is app subtype 0x10
        _entry = (0, None)  # (seq, state) of the running slot's newest valid otadata entry
        _buf = bytearray(32)
        for _part in esp32.Partition.find(esp32.Partition.TYPE_DATA, 0)[:1]:  # data/ota
            for _sector in (0, 1):
                _part.readblocks(0, _buf, _sector * 4096)
                _seq, _state, _crc = struct.unpack_from("<I20xII", _buf)
                if (_seq != 0xFFFFFFFF and _crc == binascii.crc32(_buf[:4], 0xFFFFFFFF)
                        and (_seq - 1) % 2 == _slot and _seq > _entry[0]):
                    _entry = (_seq, _state)
        if _entry[1] == 1:  # PENDING_VERIFY: nothing will confirm this firmware
            print("ota: the package cannot run on this firmware; the watchdog rolls it back")
            machine.WDT(timeout=5000)
        elif _entry[1] not in (None, 2):  # a torn state word: the bootloader would boot it again
            print("ota: the package cannot run on this firmware; booting the previous one")
            _running.get_next_update().set_boot()
            machine.reset()
