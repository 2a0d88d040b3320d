# The guest side of tests/tests/qemu_server.rs (busybox sh; applets run
# without PATH). Every finding is a "check: KEY: VALUE" line on the console;
# the test judges them. Ends by powering the machine off.
ctr() { /usr/bin/ctr -a /run/containerd/containerd.sock "$@"; }
etcdctl() { ETCDCTL_API=3 /usr/bin/etcdctl --endpoints=127.0.0.1:2379 "$@"; }
keel() { /usr/lib/keel/keel "$@"; }
say() { echo "check: $*"; }
# wait_for SECONDS COMMAND...: true once COMMAND is, polling every 0.2 s.
wait_for() {
    n=$(($1 * 5)); shift
    while [ "$n" -gt 0 ]; do
        "$@" && return 0
        sleep 0.2; n=$((n - 1))
    done
    return 1
}
state() { keel status "$1" 2>/dev/null | awk 'NR == 2 {print $2}'; }
pid_of() { keel status "$1" 2>/dev/null | awk 'NR == 2 {print $3}'; }

# The boot is blessed (slot A marked successful) once etcd, containerd and
# the container stayed ready for the grace period; wait for it before the
# restart below, which would start the grace period again.
blessed() { grep -q '"blessed_us":[0-9]' /run/keel/slot.json 2>/dev/null; }
if wait_for 60 blessed; then say "blessed: yes"; else say "blessed: no"; fi
say "status-json: $(keel status --json)"
say "tasks: $(ctr tasks ls | tr -s " \n" " ")"
if etcdctl endpoint health; then say "etcd-health: ok"; else say "etcd-health: failed"; fi

# Restarting containerd (kill-mode = "process") leaves the container running.
cpid=$(ctr tasks ls | awk '$1 == "hello" {print $2}')
hb() { cat "/proc/$cpid/root/tmp/heartbeat" 2>/dev/null; }
say "container-before: pid $cpid $(ctr tasks ls | awk '$1 == "hello" {print $3}') heartbeat $(hb)"
old=$(pid_of containerd)
keel restart containerd
back() { p=$(pid_of containerd); [ "$(state containerd)" = ready ] && [ -n "$p" ] && [ "$p" != "$old" ]; }
if wait_for 90 back; then
    say "containerd-restarted: pid $old -> $(pid_of containerd), $(state containerd)"
else
    say "containerd-restarted: no ($(state containerd))"
fi
h1=$(hb); sleep 2.5; h2=$(hb)
alive=no
[ -n "$cpid" ] && kill -0 "$cpid" 2>/dev/null && alive=yes
say "container-after: pid $cpid alive $alive task $(ctr tasks ls | awk '$1 == "hello" {print $2, $3}') heartbeat $h1 -> $h2"

# The agent: a unit put into etcd starts; a malformed one over it is
# reported and changes nothing; deleted, it stops.
key="/keel/hosts/$(hostname)/units/from-etcd.toml"
say "agent-key: $key"
etcdctl put "$key" 'description = "A unit that came from etcd"
exec = ["/bin/sh", "-c", "echo from-etcd: started; exec sleep 3600"]' >/dev/null
ready() { [ "$(state from-etcd)" = ready ]; }
if wait_for 60 ready; then upid=$(pid_of from-etcd); say "agent-put: from-etcd ready pid $upid"; else say "agent-put: from-etcd $(state from-etcd)"; fi
etcdctl put "$key" 'exec = 5
type = "sometimes"' >/dev/null
reported() { keel logs agent -n 200 2>/dev/null | grep -q "key $key: .*error"; }
if wait_for 60 reported; then r=reported; else r=silent; fi
sleep 1
say "agent-malformed: $r, from-etcd $(state from-etcd) pid $(pid_of from-etcd) (was $upid)"
etcdctl del "$key" >/dev/null
gone() { [ -z "$(state from-etcd)" ] && ! kill -0 "$upid" 2>/dev/null; }
if wait_for 60 gone; then say "agent-del: from-etcd gone, pid $upid gone"; else say "agent-del: from-etcd $(state from-etcd)"; fi

say "done"
keel poweroff
