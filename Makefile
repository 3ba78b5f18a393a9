# The front door. `make report` runs the whole matrix and writes reports/; `make test` runs every
# test (the matrix cells and the tools' own tests). Both install what the machine lacks first.
BAZEL ?= bazel

.PHONY: setup test report generate check bench clean

setup:
	@tools/setup.sh

test: setup
	$(BAZEL) test //...

report: setup
	$(BAZEL) run //tools:matrix -- report

generate: setup
	$(BAZEL) run //tools:matrix -- generate

check: setup
	$(BAZEL) run //tools:matrix -- generate --check

bench: setup
	$(BAZEL) run //bench:all

clean:
	$(BAZEL) clean
