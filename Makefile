# micropython-ota: every target sets up what it needs itself.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test soak bench demo mpy setup clean

$(STAMP): requirements-dev.txt requirements-rp2-stubs.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps --upgrade --target $(VENV)/stubs-rp2 -r requirements-rp2-stubs.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

setup: $(STAMP)
	tools/ensure-brokers.sh
	$(BIN)/python tests/devicelibs/fetch.py build/frozen build/devicelibs

test: setup
	$(BIN)/pytest -q tests/host tests/device --virtual --allow-reboot

soak: setup
	OTA_SOAK=1 $(BIN)/pytest -q -s tests/host/test_powercut_campaign.py tests/host/test_sim_power.py \
		tests/host/test_torn_writes.py tests/host/test_rp2_powercut.py tests/host/test_mqtt_transport.py::test_disruption_campaign \
		tests/host/test_fuzz.py::test_fuzz_soak

bench: setup
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

mpy: setup
	$(BIN)/python -m mpota mpy --arch xtensawin --arch armv6m --out build/mpy

demo: setup
	$(BIN)/python -m mpota.demo_pico && $(BIN)/python -m mpota demo

clean:
	rm -rf $(VENV) build .pytest_cache
