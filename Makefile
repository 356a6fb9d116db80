# Vexil: the two commands a new machine needs are `make run` and `make test`.
.PHONY: run test lint fmt bench ci demo

run:
	@scripts/run.sh $(ARGS)

# Three SDK clients (polling, streaming, prefix-filtered) against a running Vexil; README.md "Demo".
# The server key comes from ARGS="--server-key ..." or the SERVER_KEY variable.
demo:
	@cargo run -q -p vexil-sdk --example demo -- $(ARGS)

# Everything CI checks: formatting, clippy with warnings as errors, and the whole test suite.
test:
	@scripts/test.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

# Criterion benchmarks; numbers and the machine they came from are recorded in BENCHMARKS.md.
bench:
	cargo bench -p vexil-eval --bench evaluate
