# The two ways in (see README.md):
#   make demo   build keel and keel-image, boot images/minimal.toml under QEMU
#   make test   every test: format, lints, unit, integration and QEMU boots
.PHONY: demo test deps keel keel-image lint unit-tests bench

KEEL_IMAGE := target/release/keel-image
export KEEL_BIN := $(CURDIR)/build/keel

demo: deps keel keel-image
	$(KEEL_IMAGE) boot images/minimal.toml --keel $(KEEL_BIN) --timeout 120

deps:
	@scripts/deps

keel:
	@scripts/build-keel

keel-image:
	cargo build --release --locked -p keel-image --bin keel-image

lint:
	cargo fmt --all -- --check
	cargo clippy --locked --workspace --all-targets -- -D warnings

test: deps keel keel-image lint
	cargo test --locked --workspace --no-fail-fast

# Benchmarks print figures and JSON; nothing is asserted (shared, noisy machines).
bench: deps keel keel-image
	python3 bench/boot_compare.py -n 5
	cargo run --release --locked -p keel-units --example bench_units
