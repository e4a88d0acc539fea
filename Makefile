# sandboxd developer and CI entry points. Every target installs what it needs
# first (scripts/setup.sh is idempotent and fast when nothing changed).
#   make test                    all tests (CI=true turns Docker skips into failures)
#   make test TESTS=tests.test_config
#   make test JOBS=1             in one process (default: JOBS=2 trial workers)
#   make run CONFIG=config/sandboxd.toml
#   make images                  every image; IMAGES="base python" some of them;
#                                REFRESH=1 rebuilds their Debian root filesystems too
#   make vm                      the QEMU runtime's kernel, initramfs and root disk
#                                (VM_DIR, default /var/lib/sandboxd/vm; VM_IMAGES)
#   make bench                   benchmarks beside the peers (docs/benchmarks.md)
#   make bench BENCHFLAGS=--quick
#   make test TESTS="tests.test_conformance tests.test_sdk_suites"   the three SDKs
SHELL := /bin/bash
VENV := .venv
TESTS ?= tests
TRIALFLAGS ?=
JOBS ?= 2
CONFIG ?=
IMAGES ?=
REFRESH ?=
BENCHFLAGS ?=
VM_DIR ?= /var/lib/sandboxd/vm
VM_IMAGES ?= sandbox-base:latest

.PHONY: setup dockerd images vm run test bench clean

setup:
	bash scripts/setup.sh

# dockerd comes from the docker.io package that setup installs.
dockerd: setup
	bash scripts/start-dockerd.sh

images: setup dockerd
	bash scripts/build-images.sh $(if $(REFRESH),--refresh) $(IMAGES)

# Debian's cloud kernel (apt-get download), the busybox initramfs and a root
# disk per image; each step is skipped when up to date.
vm: setup dockerd images
	$(VENV)/bin/python -u scripts/build_vm.py --dir $(VM_DIR) $(VM_IMAGES)

run: setup dockerd images
	exec $(VENV)/bin/twistd --pidfile= -n sandboxd $(if $(CONFIG),--config $(CONFIG))

test: setup dockerd images vm
	$(VENV)/bin/trial $(if $(filter-out 1,$(JOBS)),--jobs=$(JOBS)) $(TRIALFLAGS) $(TESTS)

# The peers (llm-sandbox, epicbox) and matplotlib go to bench/.peers-venv.
bench: setup dockerd images
	bash bench/setup-peers.sh
	$(VENV)/bin/python bench/run.py $(BENCHFLAGS)

clean:
	rm -rf $(VENV) _trial_temp* twisted/plugins/dropin.cache
