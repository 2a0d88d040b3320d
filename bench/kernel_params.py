#!/usr/bin/env python3
"""Measures what each kernel command-line parameter saves: boots the floor
image (bench-probe as /init) N times per parameter set, all interleaved, and
prints the median (min-max) guest uptime at /init, against the baseline.

  python3 bench/kernel_params.py --kernel build/kernel/<key>/bzImage -n 7

Use a kernel built without CONFIG_CMDLINE (kernel/config/README.md says how),
so that the baseline has none of the defaults. Run `make bench` (or
boot_compare.py) once first: it builds bench/out/floor.cpio.gz. A benchmark:
nothing is asserted."""

import argparse, os, re, statistics, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INIT = re.compile(r"bench: init at ([0-9.]+) ms")

SETS = [
    "",
    "no_timer_check",
    "tsc=reliable",
    "clocksource=tsc",
    "noapictimer",
    "rcupdate.rcu_expedited=1",
    "lpj=9199956",
    "mitigations=off",
    "8250.nr_uarts=1",
    "nokaslr",
]


def boot(kernel, initrd, params):
    cmd = ["qemu-system-x86_64", "-accel", "tcg", "-M", "q35", "-cpu", "qemu64", "-m", "512",
           "-nodefaults", "-no-user-config", "-nographic", "-no-reboot", "-serial", "stdio",
           "-monitor", "none", "-kernel", kernel, "-initrd", initrd,
           "-append", f"console=ttyS0 quiet panic=-1 {params}".strip()]
    out = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, timeout=120).stdout.decode(errors="replace")
    m = INIT.search(out)
    if not m:
        sys.exit(f"{params!r}: no 'bench: init at' line:\n{out}")
    return float(m.group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--initrd", default=os.path.join(ROOT, "bench/out/floor.cpio.gz"))
    ap.add_argument("-n", type=int, default=7)
    ap.add_argument("sets", nargs="*", help="parameter sets (default: the built-in list; '' is the baseline)")
    a = ap.parse_args()
    sets = a.sets or SETS
    if "" not in sets:
        sets = [""] + sets
    times = {s: [] for s in sets}
    for i in range(a.n):
        for s in sets:
            times[s].append(boot(a.kernel, a.initrd, s))
            print(f"run {i + 1}/{a.n} {s or '(none)':30} {times[s][-1]:.0f} ms", file=sys.stderr)
    base, base_min = statistics.median(times[""]), min(times[""])
    print(f"\n{'parameters':40} {'/init at, median (min-max)':28} {'saves: median':>14} {'min':>6}")
    for s in sets:
        med, lo = statistics.median(times[s]), min(times[s])
        print(f"{s or '(none: baseline)':40} {med:6.0f} ({lo:.0f}-{max(times[s]):.0f}){'':12}"
              f"{base - med:+10.0f} ms {base_min - lo:+6.0f} ms")


if __name__ == "__main__":
    main()
