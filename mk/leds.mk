# Status LEDs. Unit tests live in tests/unit/test_leds_*.py (run by test-unit);
# the end-to-end tier needs root, network namespaces, strongSwan and the daemon.
.PHONY: test-leds test-leds-e2e leds-lamp-test

test-leds: deps
	$(PYTEST) -q tests/unit/test_leds_patterns.py tests/unit/test_leds_boards.py \
		tests/unit/test_leds_gpio.py tests/unit/test_leds_service.py

test-leds-e2e: deps
	$(PYTEST) -q tests/hw

# On a Pi: every pattern once, so the wiring can be checked by eye.
leds-lamp-test: deps
	$(PY) -m hw.service --test

TEST_TIERS += test-leds-e2e
