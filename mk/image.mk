# The SD-card image (docs/provisioning.md).
#   make image                       build/ikebox-<version>-arm64.img (+ .bmap, .sha256)
#   make flash DEVICE=/dev/sdX [BOX=branch.toml] [YES=1]
#   make test-provisioning           fast: flash checks, seed, assembly (in `make test`)
#   make test-image                  builds the image, boots it under qemu, checks it
#                                    (in `make test`)
IMAGE_CACHE ?= /var/cache/ikebox-image
IMAGE_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE ?= build/ikebox-$(IMAGE_VERSION)-arm64.img

.PHONY: image flash test-provisioning test-image image-pins

image: deps
	IKEBOX_IMAGE_CACHE=$(IMAGE_CACHE) $(PY) -m provisioning.build --out build $(if $(SSH),--ssh)

flash:
	@test -n "$(DEVICE)" || \
		{ echo "usage: make flash DEVICE=/dev/sdX [BOX=seed.toml] [YES=1]" >&2; exit 2; }
	$(PY) -m provisioning.flash --image $(IMAGE) $(if $(BOX),--seed $(BOX)) \
		$(if $(YES),--yes) $(DEVICE)

test-provisioning: deps
	$(PYTEST) -q tests/provisioning

test-image: deps image
	IKEBOX_IMAGE=$(IMAGE) $(PYTEST) -q tests/image

# test-image runs on every CI submission: the image holds all of ikebox, so any change
# can break it, and a cold build plus boot costs about 7 minutes (README, Provisioning).
TEST_TIERS += test-provisioning test-image

image-pins: deps
	$(PY) -m provisioning.pins
