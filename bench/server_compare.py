#!/usr/bin/env python3
"""The server image against Debian's standard boot chain: guest uptime when
etcd and containerd are both ready.

Two disks, the same kernel (the newest /boot/vmlinuz-*-cloud-amd64), the same
QEMU flags as keel-image boot (TCG, q35, qemu64, 512 MiB, -nodefaults, the
disk as virtio-blk), booted N times each, interleaved, each boot on a fresh
copy of its disk (so etcd and containerd always start on empty state):

  keel     images/server.toml as keel-image builds it (initramfs with keel,
           erofs root, ext4 state), plus one probe unit
  systemd  Debian's own initrd for that kernel (/boot/initrd.img-RELEASE,
           initramfs-tools) and an ext4 root built here from Debian 12's
           packages: systemd, systemd-sysv, udev, kmod, dbus, etcd-server,
           containerd, runc and their Depends closure (apt-get download, then
           dpkg-deb --fsys-tarfile | tar -x into a usr-merged tree, as
           debootstrap's extraction does, without maintainer scripts), the
           kernel's modules, and etcd and containerd units with the same
           flags and configuration as the keel image's

In both, a probe ordered after etcd and containerd (keel: a oneshot that
requires both; systemd: Requires= and After= both, Type=notify daemons)
prints /proc/uptime on the console when it starts, then the machine powers
off (keel.after-boot=poweroff; SuccessAction=poweroff). The figure is that
uptime: the same measuring point in both.

Usage: bench/server_compare.py [-n 5] [--json PATH]. A benchmark, not a
test: nothing is asserted. Needs network access to a Debian mirror the first
time (the .deb files are kept in bench/out/server-debs)."""

import argparse, glob, json, os, re, shutil, statistics, subprocess, sys, time, tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "bench", "out")
KEEL_IMAGE = os.path.join(ROOT, "target/release/keel-image")
KEEL = os.environ.get("KEEL_BIN", os.path.join(ROOT, "build/keel"))
SERVER = os.path.join(ROOT, "images", "server.toml")
READY = re.compile(r"server-ready: ([0-9.]+)")
PROBE_SH = 'read up rest < /proc/uptime; echo "server-ready: $up" > /dev/console'
# What the Debian side installs: systemd with what Debian installs beside it
# by default (udev, kmod, dbus: its Recommends and important-priority
# packages), the two daemons, and the essentials the boot touches.
PACKAGES = ["systemd", "systemd-sysv", "udev", "kmod", "dbus", "etcd-server", "containerd", "runc",
            "base-files", "base-passwd", "dash"]


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def debian_kernel():
    found = sorted(glob.glob("/boot/vmlinuz-*-cloud-amd64"))
    if not found:
        sys.exit("no /boot/vmlinuz-*-cloud-amd64: scripts/deps installs linux-image-cloud-amd64")
    kernel = found[-1]
    release = os.path.basename(kernel)[len("vmlinuz-"):]
    return kernel, release


# ---- keel -------------------------------------------------------------------

def build_keel(work):
    """images/server.toml plus the probe, as a manifest in `work` (relative
    paths made absolute), built into an initramfs and a pristine disk."""
    text = open(SERVER).read().replace('"server/', f'"{ROOT}/images/server/')
    probe = os.path.join(work, "probe.toml")
    with open(probe, "w") as f:
        f.write('description = "bench: uptime once etcd and containerd are ready"\n'
                'type = "oneshot"\nrequires = ["etcd", "containerd"]\n'
                f'exec = ["/bin/sh", "-c", {json.dumps(PROBE_SH)}]\n')
    text += f'\n[[rootfs.files]]\nsrc = "{probe}"\ndest = "/usr/lib/keel/units/bench-probe.toml"\nmode = 0o644\n'
    manifest = os.path.join(work, "server-bench.toml")
    with open(manifest, "w") as f:
        f.write(text)
    initrd, disk = os.path.join(work, "keel-initrd.img"), os.path.join(work, "keel-disk.img")
    run([KEEL_IMAGE, "initramfs", manifest, "-o", initrd, "--keel", KEEL], stdout=subprocess.DEVNULL)
    run([KEEL_IMAGE, "disk", manifest, "-o", disk, "--keel", KEEL], stdout=subprocess.DEVNULL)
    cmdline = tomllib.loads(text)["kernel"]["cmdline"] + " keel.after-boot=poweroff"
    return initrd, disk, cmdline


# ---- Debian + systemd -------------------------------------------------------

def closure():
    """PACKAGES and their Depends/Pre-Depends, recursively (real packages only)."""
    out = subprocess.run(
        ["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
         "--no-breaks", "--no-replaces", "--no-enhances"] + PACKAGES,
        check=True, capture_output=True, text=True).stdout
    return sorted({l.strip() for l in out.splitlines() if l and not l[0].isspace() and not l.startswith("<")})


def download(debs_dir, packages):
    os.makedirs(debs_dir, exist_ok=True)
    have = {os.path.basename(p).split("_")[0] for p in glob.glob(os.path.join(debs_dir, "*.deb"))}
    missing = [p for p in packages if p not in have]
    if missing:
        print(f"server_compare: apt-get download {len(missing)} packages into {debs_dir}", file=sys.stderr)
        r = subprocess.run(["apt-get", "download", "-q"] + missing, cwd=debs_dir,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            # One at a time, to name what cannot be had.
            for p in missing:
                r = subprocess.run(["apt-get", "download", "-q", p], cwd=debs_dir,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                if r.returncode != 0:
                    sys.exit(f"server_compare: cannot download {p}: {r.stderr.strip()}")
    return sorted(glob.glob(os.path.join(debs_dir, "*.deb")))


SYSTEMD_UNITS = {
    # The same flags as images/server/units/etcd.toml.
    "etcd.service": """[Unit]
Description=etcd (bench: the keel image's flags)
[Service]
Type=notify
ExecStart={etcd}
Restart=always
[Install]
WantedBy=multi-user.target
""",
    "containerd.service": """[Unit]
Description=containerd (bench: the keel image's configuration)
[Service]
Type=notify
KillMode=process
ExecStart=/usr/bin/containerd --config /etc/containerd/config.toml
Restart=always
[Install]
WantedBy=multi-user.target
""",
    "bench-probe.service": """[Unit]
Description=bench: uptime once etcd and containerd are ready
Requires=etcd.service containerd.service
After=etcd.service containerd.service
SuccessAction=poweroff
[Service]
Type=oneshot
ExecStart=/bin/busybox sh -c '{probe}'
[Install]
WantedBy=multi-user.target
""",
}


def build_systemd(work, release):
    """An ext4 root with Debian's systemd, etcd and containerd; returns the
    pristine disk and the number of packages in it."""
    packages = closure()
    debs = download(os.path.join(OUT, "server-debs"), packages)
    root = os.path.join(work, "systemd-root")
    if os.path.exists(root):
        shutil.rmtree(root)
    os.makedirs(os.path.join(root, "usr"))
    # Debian 12 is usr-merged: /bin, /sbin, /lib, /lib64 are links into /usr.
    for d in ["bin", "sbin", "lib", "lib64"]:
        os.makedirs(os.path.join(root, "usr", d), exist_ok=True)
        os.symlink(f"usr/{d}", os.path.join(root, d))
    for deb in debs:
        tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE)
        run(["tar", "-x", "--keep-directory-symlink", "-C", root], stdin=tar.stdout)
        if tar.wait() != 0:
            sys.exit(f"server_compare: dpkg-deb failed on {deb}")
    etc = os.path.join(root, "etc")

    def write(path, text, mode=0o644):
        full = os.path.join(root, path.lstrip("/"))
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "w") as f:
            f.write(text)
        os.chmod(full, mode)

    # What maintainer scripts and debootstrap would have set up.
    shutil.copy(os.path.join(root, "usr/share/base-passwd/passwd.master"), os.path.join(etc, "passwd"))
    shutil.copy(os.path.join(root, "usr/share/base-passwd/group.master"), os.path.join(etc, "group"))
    write("/etc/shadow", "root:*:19000:0:99999:7:::\n", 0o640)
    write("/etc/machine-id", "6b65656c62656e636873657276657231\n", 0o444)
    write("/etc/hostname", "keel-server\n")
    write("/etc/hosts", open(os.path.join(ROOT, "images/server/hosts")).read())
    write("/etc/fstab", "/dev/vda / ext4 rw 0 1\n")
    write("/etc/containerd/config.toml", open(os.path.join(ROOT, "images/server/containerd.toml")).read())
    shutil.copy("/bin/busybox", os.path.join(root, "usr/bin/busybox"))
    shutil.copytree(f"/lib/modules/{release}", os.path.join(root, f"usr/lib/modules/{release}"), symlinks=True)
    etcd = tomllib.load(open(os.path.join(ROOT, "images/server/units/etcd.toml"), "rb"))["exec"]
    units = os.path.join(etc, "systemd/system")
    os.makedirs(os.path.join(units, "multi-user.target.wants"), exist_ok=True)
    for name, text in SYSTEMD_UNITS.items():
        write(f"/etc/systemd/system/{name}", text.format(etcd=" ".join(etcd), probe=PROBE_SH))
        os.symlink(f"../{name}", os.path.join(units, "multi-user.target.wants", name))
    os.symlink("/lib/systemd/system/multi-user.target", os.path.join(units, "default.target"))
    # No terminal to log in on: -nodefaults has no VGA, and keel has no getty either.
    for getty in ["getty@.service", "serial-getty@.service"]:
        os.symlink("/dev/null", os.path.join(units, getty))
    size = int(subprocess.run(["du", "-sm", root], capture_output=True, text=True, check=True)
               .stdout.split()[0])
    disk = os.path.join(work, "systemd-disk.img")
    if os.path.exists(disk):
        os.remove(disk)
    run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", root, disk, f"{size * 3 // 2 + 256}M"])
    return disk, len(debs)


# ---- booting ----------------------------------------------------------------

def qemu_args(kernel, initrd, cmdline, disk):
    # The flags of keel-image boot (image/src/qemu.rs, images/README.md).
    return ["qemu-system-x86_64", "-accel", "tcg", "-M", "q35", "-cpu", "qemu64", "-m", "512",
            "-nodefaults", "-no-user-config", "-nographic", "-no-reboot", "-serial", "stdio",
            "-monitor", "none", "-kernel", kernel, "-initrd", initrd, "-append", cmdline,
            "-drive", f"file={disk},if=virtio,format=raw"]


def boot_once(name, kernel, initrd, cmdline, pristine, work, timeout):
    disk = os.path.join(work, f"{name}-run.img")
    run(["cp", "--sparse=always", pristine, disk])
    t0 = time.monotonic()
    try:
        p = subprocess.run(qemu_args(kernel, initrd, cmdline, disk), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
        console = p.stdout.decode(errors="replace")
    except subprocess.TimeoutExpired as e:
        console = (e.stdout or b"").decode(errors="replace")
        sys.exit(f"{name}: QEMU timed out after {timeout} s; console:\n{console}")
    wall = (time.monotonic() - t0) * 1000
    m = READY.search(console)
    if not m:
        sys.exit(f"{name}: no server-ready line; console:\n{console}")
    r = {"ready_ms": float(m.group(1)) * 1000, "wall_ms": round(wall)}
    b = re.search(r"keel: boot complete in (\d+) ms", console)
    if b:
        r["boot_line_ms"] = float(b.group(1))
    if "degraded" in console or "Failed to start" in console:
        print(f"{name}: note: the console reports a failure:\n" +
              "\n".join(l for l in console.splitlines() if "degraded" in l or "Failed to start" in l),
              file=sys.stderr)
    return r


def summary(values):
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=5, help="boots per system (default 5)")
    ap.add_argument("--json", default=os.path.join(OUT, "server_compare.json"))
    ap.add_argument("--timeout", type=int, default=300)
    args = ap.parse_args()
    kernel, release = debian_kernel()
    debian_initrd = f"/boot/initrd.img-{release}"
    if not os.path.exists(debian_initrd):
        sys.exit(f"no {debian_initrd}: Debian's initramfs-tools did not build one")
    work = os.path.join(OUT, "server-compare")
    os.makedirs(work, exist_ok=True)
    keel_initrd, keel_disk, keel_cmdline = build_keel(work)
    sd_disk, npkg = build_systemd(work, release)
    sd_cmdline = "console=ttyS0 quiet panic=-1 root=/dev/vda rw"
    systems = {
        "keel": (keel_initrd, keel_cmdline, keel_disk),
        "systemd": (debian_initrd, sd_cmdline, sd_disk),
    }
    runs = {name: [] for name in systems}
    for i in range(args.n):
        for name, (initrd, cmdline, disk) in systems.items():
            r = boot_once(name, kernel, initrd, cmdline, disk, work, args.timeout)
            runs[name].append(r)
            print(f"{name} #{i + 1}: etcd+containerd ready at {r['ready_ms']:.0f} ms uptime, "
                  f"wall {r['wall_ms']} ms", file=sys.stderr)
    results = {"kernel": release, "n": args.n, "debian_packages": npkg, "systems": {}}
    print(f"\nguest uptime when etcd and containerd are both ready, kernel {release}, "
          f"QEMU TCG q35/qemu64/512M, {args.n} boots each, interleaved")
    print(f"{'system':<10} {'median':>8} {'min':>8} {'max':>8} {'QEMU wall':>10}")
    for name, rs in runs.items():
        ready = summary([r["ready_ms"] for r in rs])
        wall = summary([r["wall_ms"] for r in rs])
        results["systems"][name] = {"ready_ms": ready, "wall_ms": wall, "runs": rs}
        print(f"{name:<10} {ready['median']:>8.0f} {ready['min']:>8.0f} {ready['max']:>8.0f} "
              f"{wall['median']:>10.0f}")
    k, s = (results["systems"][n]["ready_ms"]["median"] for n in ("keel", "systemd"))
    print(f"keel / systemd: {k / s:.3f}")
    with open(args.json, "w") as f:
        json.dump(results, f, indent=2)
    print(f"written to {args.json}")


if __name__ == "__main__":
    main()
