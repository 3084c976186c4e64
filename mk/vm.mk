# The VM tier: the ESP data path in a qemu guest with Debian's stock kernel (this
# host's kernel has no ESP). The guest is cached under build/vm/<hash of its inputs>.
.PHONY: test-vm vm-guest
TEST_TIERS += test-vm

vm-guest: deps
	tests/vm/build-guest.sh

test-vm: deps
	tests/vm/run-guest.sh
