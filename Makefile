# sandboxd developer and CI entry points. Every target installs what it needs
# first (scripts/setup.sh is idempotent and fast when nothing changed).
#   make test                    all tests (CI=true turns Docker skips into failures)
#   make test TESTS=tests.test_config
#   make run CONFIG=config/sandboxd.toml
#   make images                  every image; IMAGES="base python" some of them;
#                                REFRESH=1 rebuilds their Debian root filesystems too
#   make bench                   benchmarks beside the peers (docs/benchmarks.md)
#   make bench BENCHFLAGS=--quick
SHELL := /bin/bash
VENV := .venv
TESTS ?= tests
TRIALFLAGS ?=
CONFIG ?=
IMAGES ?=
REFRESH ?=
BENCHFLAGS ?=

.PHONY: setup dockerd images run test bench clean

setup:
	bash scripts/setup.sh

# dockerd comes from the docker.io package that setup installs.
dockerd: setup
	bash scripts/start-dockerd.sh

images: setup dockerd
	bash scripts/build-images.sh $(if $(REFRESH),--refresh) $(IMAGES)

run: setup dockerd images
	exec $(VENV)/bin/twistd --pidfile= -n sandboxd $(if $(CONFIG),--config $(CONFIG))

test: setup dockerd images
	$(VENV)/bin/trial $(TRIALFLAGS) $(TESTS)

# The peers (llm-sandbox, epicbox) and matplotlib go to bench/.peers-venv.
bench: setup dockerd images
	bash bench/setup-peers.sh
	$(VENV)/bin/python bench/run.py $(BENCHFLAGS)

clean:
	rm -rf $(VENV) _trial_temp* twisted/plugins/dropin.cache
