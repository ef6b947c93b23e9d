# Ion: the two commands a newcomer needs are `make demo` and `make test`.
.PHONY: demo test test-fast bench bench-quick lint proto lock emulators clean help images base-image docker-requirements

VENV := .venv/bin
DEMO_HOME := $(CURDIR)/.ion-demo

help:
	@echo "make demo    run the example pipeline locally (no cloud, no cluster, no services)"
	@echo "make test    run the whole test suite (installs what it needs)"
	@echo "make bench   run the benchmarks (bench-quick for a short run)"
	@echo "make lint    ruff, mypy --strict and the import contracts"
	@echo "make proto   regenerate the gRPC stubs"
	@echo "make lock    re-resolve requirements/lock.txt from requirements/dev.in"
	@echo "make images  build Ion's container images (BASE_IMAGE=... to change their base)"

.venv/.ion-stamp: requirements/lock.txt */pyproject.toml tools/bootstrap.sh
	@tools/bootstrap.sh

demo: .venv/.ion-stamp
	@rm -rf $(DEMO_HOME)
	ION_HOME=$(DEMO_HOME) $(VENV)/ion-management pipeline run examples/media-classifiers/pipeline.yaml

# Installs the pinned Azure emulators (Azurite, cosmosdb-server) for the tests. Without npm they
# cannot be installed: their suites are then skipped, and the pytest summary says which and why
# (conftest.py); with ION_REQUIRE_EMULATORS=1 (as .ci/run sets) that is an error instead.
emulators:
	@if [ ! -x tools/emulators/install.sh ]; then \
	  echo "make emulators: tools/emulators/install.sh is missing or not executable" >&2; exit 1; \
	elif command -v npm >/dev/null 2>&1 || [ "$$ION_REQUIRE_EMULATORS" = "1" ]; then \
	  tools/emulators/install.sh; \
	elif ! tools/emulators/install.sh >/dev/null 2>&1; then \
	  echo "make emulators: npm not found (install Node.js >= 20): the Azurite and Cosmos emulator" \
	    "suites will be SKIPPED; the pytest summary lists them. ION_REQUIRE_EMULATORS=1 makes this an error." >&2; \
	fi

test: .venv/.ion-stamp emulators
	GRPC_VERBOSITY=ERROR $(VENV)/python -m pytest -q -n 2 --dist loadscope

test-fast: .venv/.ion-stamp
	GRPC_VERBOSITY=ERROR $(VENV)/python -m pytest -q -n 2 --dist loadscope -m "not slow"

bench: .venv/.ion-stamp emulators
	$(VENV)/python bench/run_all.py

bench-quick: .venv/.ion-stamp
	$(VENV)/python bench/run_all.py --quick

lint: .venv/.ion-stamp
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy core/src handler/src dispatcher/src management/src cli/src
	$(VENV)/lint-imports

proto: .venv/.ion-stamp
	$(VENV)/python proto/generate.py

lock:
	python3 -m pip install --quiet uv && python3 -m uv pip compile --generate-hashes --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 --no-header requirements/dev.in -o requirements/lock.txt

# Container images (deployment/docker), built offline with `docker build --network none` against
# the engine tools/docker/prepare.sh gives (DOCKER_HOST if set). BASE_IMAGE defaults to the
# official python:3.11-slim; where nothing can be pulled, `make base-image` builds
# localhost/ion-base:bookworm-py311 to pass instead.
BASE_IMAGE ?= python:3.11-slim
images: .venv/.ion-stamp
	@host=$${DOCKER_HOST:-$$(tools/docker/prepare.sh)} && \
	  DOCKER_HOST=$$host $(VENV)/python tools/docker/images.py --base-image "$(BASE_IMAGE)"

base-image:
	@host=$${DOCKER_HOST:-$$(tools/docker/prepare.sh)} && DOCKER_HOST=$$host tools/docker/base-image.sh

# The per-image hash-pinned requirements (deployment/docker/requirements), cut from the lock.
docker-requirements: .venv/.ion-stamp
	$(VENV)/python tools/docker/requirements.py

clean:
	rm -rf $(DEMO_HOME) .pytest_cache .mypy_cache .ruff_cache
