# The front door. `make report` runs the matrix (its cells, nothing else) and writes reports/; it
# needs Bazel and Python only. `make test` runs every test: the matrix cells, the tools' own tests
# (both `bazel test //...`; the HTML report's browser test needs Chromium), the drills and the
# remote-execution integration test. Each installs what the machine lacks first.
BAZEL ?= bazel

.PHONY: setup setup-test setup-remote test test-drill test-remote report generate check bench clean

setup:
	@tools/setup.sh

setup-test:
	@tools/setup.sh --test

setup-remote: setup
	@tools/remote/setup.sh

test: setup-test setup-remote
	$(BAZEL) test //...
	$(MAKE) test-drill
	$(BAZEL) run //tools/matrix/drill:history_drill
	$(MAKE) test-remote

# Hostile tests, outputs, file names and suite configurations under real Bazel (docs/reliability.md):
# 0 results lost, every record exact. Each drill runs in its own scratch workspace and output base.
DRILLS = fault_drill input_drill names_drill runtime_drill tools_drill ops_drill
test-drill: setup
	@for drill in $(DRILLS); do $(BAZEL) run //tools/matrix/drill:$$drill || exit 1; done

test-remote: setup-remote
	$(BAZEL) run //tools/remote:integration_test

report: setup
	$(BAZEL) run //tools:matrix -- report

generate: setup
	$(BAZEL) run //tools:matrix -- generate

check: setup
	$(BAZEL) run //tools:matrix -- generate --check

bench: setup
	$(BAZEL) run //bench:bench

clean:
	$(BAZEL) clean
