#!/usr/bin/env python3
"""make bench: where a boot's time goes, side by side with baselines.

Three initramfs images, each booted N times on two kernels (the Debian cloud
kernel and Keel's, build/kernel/bzImage), all interleaved, under QEMU TCG with
keel-image's flags:

  floor         bench-probe (probe.c) is /init: clock, memory, power off
  busybox-init  busybox init; its rc starts 10 services in the background
  keel          keel with the same 10 services, each ready by sd_notify

For each (kernel, image): guest uptime when everything was ready (median, min,
max), when /init started, the userspace share (ready - init start), QEMU's wall
time, PID 1's Rss, Private_Dirty and Anonymous (/proc/1/smaps_rollup, printed
by a last step in the guest), and the initramfs size. Prints a table, the issue's goals,
and writes bench/results.json (or --json PATH). A benchmark, not a test:
nothing is asserted."""

import argparse, glob, json, os, re, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
OUT = os.path.join(BENCH, "out")
KEEL_IMAGE = os.path.join(ROOT, "target/release/keel-image")
KEEL = os.environ.get("KEEL_BIN", os.path.join(ROOT, "build/keel"))
PROBE = os.path.join(OUT, "bench-probe")
CMDLINE = "console=ttyS0 quiet panic=-1"

# name, manifest, the /init keel-image puts in the archive, extra command line
IMAGES = [
    ("floor", "floor.toml", PROBE, ""),
    ("busybox-init", "busybox.toml", KEEL, "rdinit=/sbin/init"),
    ("keel", "keel.toml", KEEL, ""),
]

BOOT_LINE = re.compile(r"keel: boot complete in (\d+) ms \(kernel (\d+) ms")
READY = re.compile(r"bench: ready at ([0-9.]+) ms")
INIT = re.compile(r"bench: init at ([0-9.]+) ms")
RC_AT = re.compile(r"bench: rc at ([0-9.]+) s")
MEM = re.compile(r"bench: pid1 rss_kb=(-?\d+) private_dirty_kb=(-?\d+) anon_kb=(-?\d+)")


def debian_kernel():
    found = sorted(glob.glob("/boot/vmlinuz-*-cloud-amd64"))
    return found[-1] if found else None


def build_probe():
    src = os.path.join(BENCH, "probe.c")
    if not os.path.exists(PROBE) or os.path.getmtime(PROBE) < os.path.getmtime(src):
        os.makedirs(OUT, exist_ok=True)
        subprocess.run(["gcc", "-static", "-Os", "-s", "-Wall", "-Wextra", "-o", PROBE, src], check=True)


def build_image(name, manifest, init):
    out = os.path.join(OUT, name + ".cpio.gz")
    subprocess.run([KEEL_IMAGE, "initramfs", os.path.join(BENCH, manifest), "-o", out, "--keel", init],
                   check=True, stdout=subprocess.DEVNULL)
    return out, os.path.getsize(out)


def qemu_args(kernel, initrd, cmdline):
    # The flags of keel-image boot (image/src/qemu.rs, images/README.md).
    return ["qemu-system-x86_64", "-accel", "tcg", "-M", "q35", "-cpu", "qemu64", "-m", "512",
            "-nodefaults", "-no-user-config", "-nographic", "-no-reboot", "-serial", "stdio",
            "-monitor", "none", "-kernel", kernel, "-initrd", initrd, "-append", cmdline]


def boot_once(image, kernel, initrd, extra, append, timeout):
    cmdline = " ".join(x for x in (CMDLINE, extra, append) if x)
    t0 = time.monotonic()
    try:
        p = subprocess.run(qemu_args(kernel, initrd, cmdline), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        console = p.stdout.decode(errors="replace")
    except subprocess.TimeoutExpired as e:
        console = (e.stdout or b"").decode(errors="replace")
        sys.exit(f"{image}: QEMU timed out after {timeout} s; console:\n{console}")
    wall = (time.monotonic() - t0) * 1000
    r = {"wall_ms": round(wall)}
    if image == "keel":
        m = BOOT_LINE.search(console)
        if m:
            r["ready_ms"], r["init_ms"] = float(m.group(1)), float(m.group(2))
    else:
        m, i = READY.search(console), INIT.search(console) or RC_AT.search(console)
        if m:
            r["ready_ms"] = float(m.group(1))
        if i:
            r["init_ms"] = float(i.group(1)) * (1000 if i.re is RC_AT else 1)
    mem = MEM.search(console)
    if mem:
        r["rss_kb"], r["private_dirty_kb"], r["anon_kb"] = (int(g) for g in mem.groups())
    if "ready_ms" not in r or "degraded" in console:
        sys.exit(f"{image}: no clean readiness line in the console:\n{console}")
    if "init_ms" in r:
        r["userspace_ms"] = round(r["ready_ms"] - r["init_ms"], 1)
    return r


def summary(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def fmt(s, key="median"):
    return "-" if s is None else f"{s[key]:.0f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=5, help="boots per (kernel, image), interleaved")
    ap.add_argument("--json", default=os.path.join(BENCH, "results.json"))
    ap.add_argument("--keel-kernel", default=os.path.join(ROOT, "build/kernel/bzImage"))
    ap.add_argument("--debian-kernel", default=debian_kernel())
    ap.add_argument("--images", default=",".join(n for n, *_ in IMAGES), help="comma-separated subset")
    ap.add_argument("--kernels", default="debian,keel", help="comma-separated subset")
    ap.add_argument("--append", default="", help="more kernel command line, for every boot")
    ap.add_argument("--timeout", type=int, default=120)
    a = ap.parse_args()

    kernels = []
    for k in a.kernels.split(","):
        path = {"debian": a.debian_kernel, "keel": os.path.realpath(a.keel_kernel)}[k]
        if not path or not os.path.isfile(path):
            sys.exit(f"bench: the {k} kernel ({path}) is missing (make kernel; scripts/deps)")
        kernels.append((k, path))
    images = [i for i in IMAGES if i[0] in a.images.split(",")]
    build_probe()
    built = {name: build_image(name, manifest, init) for name, manifest, init, _ in images}
    runs = {(k, name): [] for k, _ in kernels for name, *_ in images}
    for i in range(a.n):
        for k, kpath in kernels:
            for name, _, _, extra in images:
                r = boot_once(name, kpath, built[name][0], extra, a.append, a.timeout)
                runs[(k, name)].append(r)
                print(f"run {i + 1}/{a.n} {k:6} {name:12} ready {r['ready_ms']:7.1f} ms"
                      f" (init {r.get('init_ms', 0):7.1f}), wall {r['wall_ms']} ms,"
                      f" pid1 rss {r.get('rss_kb')} kB", file=sys.stderr)

    keel_size = os.path.getsize(KEEL)
    result = {"n": a.n, "qemu": "TCG, -M q35 -cpu qemu64 -m 512", "cmdline": CMDLINE,
              "append": a.append, "kernels": dict(kernels), "keel_stripped_bytes": keel_size,
              "date": time.strftime("%Y-%m-%d"), "cases": {}}
    head = (f"{'kernel':7}{'init':13}{'ready ms med (min-max)':25}{'init at':>8}{'userspace':>10}"
            f"{'wall ms':>8}{'PID1 RSS kB':>12}{'Priv_Dirty':>11}{'Anon kB':>8}{'initramfs B':>12}")
    print("\n" + head)
    for k, _ in kernels:
        for name, *_ in images:
            rs = runs[(k, name)]
            s = {key: summary([r.get(key) for r in rs])
                 for key in ("ready_ms", "init_ms", "userspace_ms", "wall_ms", "rss_kb", "private_dirty_kb",
                             "anon_kb")}
            result["cases"][f"{k}/{name}"] = dict(s, initramfs_bytes=built[name][1], runs=rs)
            ready = s["ready_ms"]
            print(f"{k:7}{name:13}{fmt(ready) + ' (' + fmt(ready, 'min') + '-' + fmt(ready, 'max') + ')':25}"
                  f"{fmt(s['init_ms']):>8}{fmt(s['userspace_ms']):>10}{fmt(s['wall_ms']):>8}"
                  f"{fmt(s['rss_kb']):>12}{fmt(s['private_dirty_kb']):>11}{fmt(s['anon_kb']):>8}"
                  f"{built[name][1]:>12}")
    result["goals"] = goals(result["cases"], keel_size)
    with open(a.json, "w") as f:
        json.dump(result, f, indent=2)
    print(f"\nwrote {os.path.relpath(a.json, ROOT)}")


def goals(cases, keel_size):
    """The issue's goals, reported (never asserted)."""
    g, lines = {}, []

    def case(k, n):
        return cases.get(f"{k}/{n}")

    keel, floor = case("keel", "keel"), case("keel", "floor")
    if keel:
        g["all_ready_before_1s_on_keel_kernel"] = {"max_ms": keel["ready_ms"]["max"],
                                                   "met": keel["ready_ms"]["max"] < 1000}
        lines.append(f"keel kernel + keel + 10 services ready before 1.0 s: median "
                     f"{keel['ready_ms']['median']:.0f} ms, max {keel['ready_ms']['max']:.0f} ms "
                     f"-> {'met' if g['all_ready_before_1s_on_keel_kernel']['met'] else 'NOT met'}")
    for k in ("keel", "debian"):
        kc, fc = case(k, "keel"), case(k, "floor")
        if kc and fc:
            ratio = kc["ready_ms"]["median"] / fc["ready_ms"]["median"]
            us_k, us_f = kc["userspace_ms"]["median"], fc["userspace_ms"]["median"]
            g[f"{k}_kernel_keel_over_floor_ready"] = {"ratio": round(ratio, 3), "met": ratio <= 1.2,
                                                      "keel_userspace_ms": us_k, "floor_userspace_ms": us_f}
            lines.append(f"{k} kernel: keel ready / floor ready (medians) {ratio:.3f} "
                         f"({'met' if ratio <= 1.2 else 'NOT met'}, goal <= 1.2); userspace "
                         f"(init start -> ready) keel {us_k:.0f} ms, floor {us_f:.1f} ms")
    rss = [c["rss_kb"]["max"] for n, c in cases.items() if n.endswith("/keel") and c["rss_kb"]]
    anon = [c["anon_kb"]["max"] for n, c in cases.items() if n.endswith("/keel") and c["anon_kb"]]
    if rss:
        g["pid1_rss_under_1mib"] = {"max_kb": max(rss), "met": max(rss) < 1024,
                                    "max_anon_kb": max(anon) if anon else None}
        lines.append(f"keel PID 1 RSS: max {max(rss)} kB ({'met' if max(rss) < 1024 else 'NOT met'}, goal < 1024 kB;"
                     f" the text it touched counts: initramfs files are ramfs pages), of which anonymous"
                     f" (heap, stacks) max {max(anon) if anon else '-'} kB")
    g["keel_stripped_under_1mib"] = {"bytes": keel_size, "met": keel_size < 1 << 20,
                                     "under_1000_kib": keel_size < 1000 * 1024}
    lines.append(f"stripped keel: {keel_size} B = {keel_size / 1024:.0f} KiB "
                 f"({'met' if keel_size < 1 << 20 else 'NOT met'}, goal < 1024 KiB)")
    print("\ngoals (issue 7; reported, not asserted):\n  " + "\n  ".join(lines))
    return g


if __name__ == "__main__":
    main()
