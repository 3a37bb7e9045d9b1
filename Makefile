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

bench:
	cargo bench --locked

stack-up:
	scripts/kafka.sh start

stack-down:
	scripts/kafka.sh stop

clean:
	cargo clean
