# The web UI: Flask test client against a real control socket (fast), then the browser
# tier (headless Chromium, the real daemon and strongSwan in namespaces; needs root).
.PHONY: test-webui test-browser webui-dev

test-webui: deps
	$(PYTEST) -q tests/webui -m "not browser"

test-browser: deps
	$(PYTEST) -q tests/webui -m browser

TEST_TIERS += test-webui test-browser
