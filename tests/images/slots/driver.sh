#!/bin/sh
# The test's hands in the guest (tests/tests/qemu_slots.rs). Reads
# test.do=, test.sha=, test.pause= from the kernel command line:
#   update    once blessed: apply /dev/vdb (sha256 test.sha) and reboot
#   refuse    once blessed: three applies that must be refused, then power off
#   rollback  once blessed: print the status, roll back, power off
#   status    once blessed: print the status, power off
#   pause     no blessing needed: apply with KEEL_UPDATE_PAUSE=test.pause
#             (the host kills QEMU there, or some time after apply-start)
#   nothing   do nothing (a boot that must not be blessed)
PATH=/usr/lib/keel:/bin
do=; sha=; pause=
for w in $(busybox cat /proc/cmdline); do
    case "$w" in
        test.do=*) do="${w#test.do=}" ;;
        test.sha=*) sha="${w#test.sha=}" ;;
        test.pause=*) pause="${w#test.pause=}" ;;
    esac
done
echo "slot-version: $(busybox cat /etc/slot-version)"

# Waits for the blessing while another reader hammers `keel update status`:
# readers must never undo PID 1's write of the slot's GPT entry (a reader
# that took the copies' difference mid-write for damage once did).
blessed() {
    (while :; do keel update status >/dev/null 2>&1; done) &
    hammer=$!
    i=0
    until keel update status | busybox grep -q '^blessed at'; do
        i=$((i + 1))
        if [ $i -gt 600 ]; then echo "driver: never blessed"; break; fi
        busybox sleep 0.1
    done
    kill $hammer
    wait $hammer 2>/dev/null
    [ $i -le 600 ] && echo "driver: blessed"
}
status() {
    keel update status 2>&1 | busybox sed 's/^/status: /'
}
apply() {
    keel update apply "$@" 2>&1 | busybox sed 's/^/apply: /'
}

case "$do" in
update)
    blessed && status
    apply /dev/vdb --sha256 "$sha"
    status
    keel reboot
    ;;
refuse)
    blessed && status
    echo "attrs-before: $(keel update status | busybox grep '^slot' | busybox tr '\n' ' ')"
    apply /dev/vdb --sha256 "$sha"
    apply /dev/vdc --sha256 "$(busybox sha256sum /dev/vdc | busybox cut -d' ' -f1)"
    apply /dev/vdb --sha256 "$(busybox sha256sum /dev/vdb | busybox cut -d' ' -f1)" --slot a
    echo "attrs-after: $(keel update status | busybox grep '^slot' | busybox tr '\n' ' ')"
    keel poweroff
    ;;
rollback)
    blessed && status
    keel update rollback 2>&1 | busybox sed 's/^/rollback: /'
    status
    keel poweroff
    ;;
status)
    blessed && status
    keel poweroff
    ;;
pause)
    status
    echo "apply-start"
    # Not through sed: its buffering would hold back the pause line.
    KEEL_UPDATE_PAUSE="$pause" keel update apply /dev/vdb --sha256 "$sha" 2>&1
    status
    keel poweroff
    ;;
esac
exec busybox sleep 100000
