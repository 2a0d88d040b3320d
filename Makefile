# The two ways in (see README.md):
#   make demo   build keel and keel-image, boot the server image (images/server.toml) under QEMU
#               (make demo-minimal: the small initramfs-only image, a few seconds)
#   make test   every test: format, lints, unit, integration and QEMU boots
.PHONY: demo demo-minimal test deps keel keel-image lint unit-tests bench kernel

KEEL_IMAGE := target/release/keel-image
export KEEL_BIN := $(CURDIR)/build/keel

# The server image from a GPT disk: etcd and containerd ready by sd_notify,
# the container from the image's own OCI archive, etcdctl's health check,
# keel agent on etcd; a virtio NIC from QEMU's user network for eth0. It
# powers off once the boot is complete; the boot profile (time, critical
# chain, blame) is printed and kept with its SVG chart in build/profile/.
demo: deps keel keel-image
	$(KEEL_IMAGE) boot images/server.toml --keel $(KEEL_BIN) --timeout 300 \
		--append keel.after-boot=poweroff --qemu-arg=-nic --qemu-arg=user,model=virtio-net-pci \
		--profile build/profile/server

demo-minimal: deps keel keel-image
	$(KEEL_IMAGE) boot images/minimal.toml --keel $(KEEL_BIN) --timeout 120 \
		--profile build/profile/minimal

deps:
	@scripts/deps

keel:
	@scripts/build-keel

keel-image:
	cargo build --release --locked -p keel-image --bin keel-image

lint:
	cargo fmt --all -- --check
	cargo clippy --locked --workspace --all-targets -- -D warnings

test: deps keel keel-image kernel lint
	cargo test --locked --workspace --no-fail-fast

# Keel's kernel (kernel/config/): built once per fragment and source, cached
# by content hash in build/kernel/<key>/; build/kernel/bzImage points at it.
kernel: deps
	@scripts/build-kernel

# Benchmarks print figures and JSON; nothing is asserted (shared, noisy machines).
# The supervisor's micro-benchmarks run once their example exists.
BENCH_N ?= 5
bench: deps keel keel-image kernel
	python3 bench/boot_compare.py -n $(BENCH_N)
	@if [ -f supervisor/examples/bench_supervisor.rs ]; then \
		cargo run --release --locked -p keel-supervisor --example bench_supervisor; \
	else echo "bench: supervisor/examples/bench_supervisor.rs not there yet; skipped"; fi
	cargo run --release --locked -p keel-units --example bench_units
