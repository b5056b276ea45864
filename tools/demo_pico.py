"""The Pico W part of `make demo`: a simulated Pico W takes a good app bundle over MQTT and rolls
back a bad one by itself, with the same live table as the ESP32 boards (tools/demo.py, whose
machinery this reuses: broker, key, status watching, clean-up).

The board is provisioned as `mpota provision --bundle` does (the launcher as main.py, a first
bundle installed), then powered on in the rp2 simulator (boards/unix/rp2host)."""
import shutil
import subprocess
import sys
import tempfile

from mpota import bundle, cmd_bundle, demo, fwimage, provision, signing

BOARD = "rp2-pico-w"
APP = (demo.ROOT / "boards" / "rp2" / "demo" / "main.py").read_bytes()
HEAPSIZE = "256K"  # a Pico W's heap with Wi-Fi up, for the unix port's 64-bit objects (docs/SIMULATOR.md)


def app_bundle(behaviour):
    return bundle.pack({"main.py": APP, "behaviour.py": behaviour.encode()})


class PicoDemo(demo.Demo):
    def release(self, version, behaviour, counter):
        data = app_bundle(behaviour)
        tbs = signing.build_manifest(data, board=BOARD, version=version, counter=counter, chunk_size=4096,
                                     key_id=self.key.public_key(), target="bundle")
        return signing.sign(tbs, self.key), data

    def start_boards(self):
        sys.path.insert(0, str(demo.ROOT / "boards" / "unix"))
        from rp2host import board, fs

        credentials = provision.read_credentials(self.broker.pki.ca_file)
        for n in range(1, self.count + 1):
            device_id = "pico-%02d" % n
            home = self.dir / device_id
            config = provision.device_config(device_id, "%s:%d" % (self.broker.host, self.broker.port), board=BOARD,
                                             fleet=demo.FLEET, server_hostname="localhost")
            config["wdt_ms"], config["confirm_within_ms"] = 8000, 60000
            provision.stage(home / "fs", config=config, trust=self.trust, credentials=credentials, arch="bytecode",
                            main=cmd_bundle.LAUNCHER)
            first = home / "first.bundle"
            first.write_bytes(app_bundle(fwimage.FW_HEALTHY))
            cmd_bundle.stage_first(home / "fs", first, "1.0.0")
            board.new_board(home / "flash.bin")
            fs.copy_tree(home / "flash.bin", home / "fs")
            cmd = [sys.executable, "-m", "mpota.rp2sim", "rp2-run", "--flash", str(home / "flash.bin"),
                   "--heapsize", HEAPSIZE]
            proc = subprocess.Popen(cmd, cwd=demo.ROOT, stdout=open(home / "console.log", "wb"),
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            self.boards.append((device_id, proc))
        self.say("boards: %d simulated Pico W with app bundle 1.0.0 (no firmware slots: bundles only)" % self.count)

    def summary(self, ok):
        on_good = sum(1 for r in self.states.values() if r.get("version") == "1.1.0")
        rolled = sum(1 for r in self.states.values() if r.get("reason") == "health_check_failed")
        self.say("\n== Pico W summary")
        self.say("good bundle 1.1.0 confirmed on %d/%d Pico W" % (on_good, self.count))
        self.say("bad bundle 1.2.0 rolled back on %d/%d Pico W (reason health_check_failed)" % (rolled, self.count))
        self.say("PICO W DEMO %s" % ("PASSED" if ok else "FAILED"))


def main(devices=1):
    workdir = tempfile.mkdtemp(prefix="mpota-demo-")
    run = PicoDemo(workdir, devices, out=lambda line: print(line, flush=True))
    run.say("== Pico W: app bundles over MQTT")
    ok = False
    try:
        ok = run.run()
    except KeyboardInterrupt:
        run.say("interrupted")
    finally:
        run.stop()
        run.summary(ok)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
