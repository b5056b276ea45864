# micropython-ota: every target sets up what it needs itself.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test soak bench demo mpy setup clean

$(STAMP): requirements-dev.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

setup: $(STAMP)
	tools/ensure-brokers.sh

test: setup
	$(BIN)/pytest -q tests/host tests/device --virtual --allow-reboot

soak: setup
	OTA_SOAK=1 $(BIN)/pytest -q -s tests/host/test_powercut_campaign.py tests/host/test_sim_power.py \
		tests/host/test_mqtt_transport.py::test_disruption_campaign

bench: setup
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

mpy: setup
	$(BIN)/python -m tools mpy --arch xtensawin --arch armv6m --out build/mpy

demo: setup
	$(BIN)/python -m tools demo

clean:
	rm -rf $(VENV) build .pytest_cache
