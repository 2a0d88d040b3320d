#!/usr/bin/env python3
"""Boots keel (images/minimal.toml) and busybox init running the same units
(bench/busybox.toml) N times each, interleaved, on the same kernel and QEMU
settings, and prints the median, min and max of the guest uptime when the
units were up, the QEMU wall time, and the initramfs sizes. Writes JSON to
bench/results.json (or --json PATH). A benchmark, not a test: nothing is
asserted."""

import argparse, json, os, re, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEEL_IMAGE = os.path.join(ROOT, "target/release/keel-image")
KEEL = os.environ.get("KEEL_BIN", os.path.join(ROOT, "build/keel"))

CASES = [
    ("keel", "images/minimal.toml", re.compile(r"keel: boot complete in (\d+) ms \(kernel (\d+) ms")),
    ("busybox-init", "bench/busybox.toml", re.compile(r"bench: ready at ([0-9.]+) s")),
]


def build(manifest, out):
    subprocess.run([KEEL_IMAGE, "initramfs", os.path.join(ROOT, manifest), "-o", out, "--keel", KEEL],
                   check=True, stdout=subprocess.DEVNULL)
    return os.path.getsize(out)


def boot_once(name, manifest, pattern, initrd):
    t0 = time.monotonic()
    p = subprocess.run([KEEL_IMAGE, "boot", os.path.join(ROOT, manifest), "--initramfs", initrd,
                        "--keel", KEEL, "--timeout", "120"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = (time.monotonic() - t0) * 1000
    m = pattern.search(p.stdout)
    if not m:
        sys.exit(f"{name}: no readiness line in the console:\n{p.stdout}")
    if name == "keel":
        ready, kernel = float(m.group(1)), float(m.group(2))
    else:
        ready, kernel = float(m.group(1)) * 1000, None
    return {"ready_ms": ready, "init_exec_ms": kernel, "wall_ms": round(wall)}


def summary(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=5)
    ap.add_argument("--json", default=os.path.join(ROOT, "bench/results.json"))
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="keel-bench-")
    sizes, runs = {}, {name: [] for name, _, _ in CASES}
    for name, manifest, _ in CASES:
        sizes[name] = build(manifest, os.path.join(tmp, name + ".cpio.gz"))
    for i in range(a.n):
        for name, manifest, pattern in CASES:
            r = boot_once(name, manifest, pattern, os.path.join(tmp, name + ".cpio.gz"))
            runs[name].append(r)
            print(f"run {i + 1}/{a.n} {name:13} ready {r['ready_ms']:.0f} ms, wall {r['wall_ms']} ms",
                  file=sys.stderr)
    result = {"n": a.n, "kernel": "debian cloud (TCG)", "keel_stripped_bytes": os.path.getsize(KEEL), "cases": {}}
    print(f"\n{'init':14} {'ready ms (median/min/max)':28} {'wall ms (median)':18} initramfs")
    for name, _, _ in CASES:
        ready = summary([r["ready_ms"] for r in runs[name]])
        wall = summary([r["wall_ms"] for r in runs[name]])
        result["cases"][name] = {"ready_ms": ready, "wall_ms": wall,
                                 "init_exec_ms": summary([r["init_exec_ms"] for r in runs[name]]),
                                 "initramfs_bytes": sizes[name], "runs": runs[name]}
        print(f"{name:14} {ready['median']:.0f} / {ready['min']:.0f} / {ready['max']:.0f}{'':12} "
              f"{wall['median']:<18.0f} {sizes[name]} B")
    k, b = result["cases"]["keel"]["ready_ms"]["median"], result["cases"]["busybox-init"]["ready_ms"]["median"]
    result["keel_over_busybox_ready"] = round(k / b, 3)
    print(f"\nkeel / busybox-init (median ready): {k / b:.3f}; keel stripped {result['keel_stripped_bytes']} B")
    with open(a.json, "w") as f:
        json.dump(result, f, indent=2)
    print("BENCH_JSON " + json.dumps({"keel_ready_ms": k, "busybox_ready_ms": b,
                                      "ratio": result["keel_over_busybox_ready"]}))


if __name__ == "__main__":
    main()
