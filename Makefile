# herald — the two commands that do all the set-up on a fresh machine:
#   make run    local broker + receiver + herald with the example config + a sample alert
#   make test   the whole test suite (installs what is missing, starts and stops the broker)

.PHONY: run test build lint bench stack-up stack-down clean

run:
	scripts/run-local.sh

test:
	scripts/test.sh

build:
	cargo build --release --locked

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets --locked -- -D warnings

# Criterion micro-benchmarks, then the end-to-end run against the real broker
# (ledger on versus off). Starts the broker if needed and stops it after.
bench:
	scripts/bench.sh

stack-up:
	scripts/kafka.sh start

stack-down:
	scripts/kafka.sh stop

clean:
	cargo clean
