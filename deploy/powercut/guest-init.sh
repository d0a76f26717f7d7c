#!/bin/sh
# The power-cut guest's init (booted with init=/usr/local/sbin/powercut-init): mounts the data disk,
# brings up the network for qemu's user networking, and runs the service under test, taking
# commands from the host on the second serial port (/dev/ttyS1), one per line, each answered with
# one line:
#   ping                 -> pong
#   verify               -> stops the service (SIGTERM, a clean stop), runs the data disk's
#                           ./verify (for the aggregator, `aggregator archive verify --strict`),
#                           starts the service again and answers "verify exit=N lines=K" and
#                           the K lines of the report that matter (all but clean segments and
#                           sources), also printed on the console
#   poweroff             -> stops the service, syncs, powers off
# The host cuts the power with kill -9 on qemu whenever it likes; nothing here expects a clean end.
# The data disk (/dev/vdb, ext4, made by the host with mkfs.ext4 -d) holds ./service (execs the
# daemon: the aggregator, or nats-server), ./verify and what they need.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# The initramfs may have mounted these already.
mount -t proc proc /proc 2>/dev/null
mount -t sysfs sysfs /sys 2>/dev/null
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
log() { echo "powercut-init: $*" > /dev/console; }

for m in virtio_pci virtio_blk virtio_net virtio_console ext4; do modprobe -q "$m" 2>/dev/null; done
i=0
while [ ! -b /dev/vdb ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -b /dev/vdb ] || { log "no /dev/vdb"; echo o > /proc/sysrq-trigger; }
mount -t ext4 -o noatime /dev/vdb /data || { log "cannot mount /dev/vdb"; echo o > /proc/sysrq-trigger; }

ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2

cd /data
daemon=""
start_daemon() {
    ./service >> /data/service.log 2>&1 &
    daemon=$!
    log "service started pid=$daemon"
    # A service that ends by itself (a start that refuses the archive) says why on the console,
    # where the host reads it; one stopped by stop_daemon (its pid's flag set) does not. It stays
    # a zombie until waited for: watch its state, not its pid.
    (
        pid=$daemon
        while [ -d "/proc/$pid" ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; do
            sleep 1
        done
        [ -e "/tmp/stopping.$pid" ] ||
            tail -n 5 /data/service.log | sed 's/^/powercut-init: service died: /' > /dev/console
    ) &
}
stop_daemon() {
    if [ -n "$daemon" ]; then
        touch "/tmp/stopping.$daemon"
        kill -TERM "$daemon" 2>/dev/null
        wait "$daemon"
        log "service exited status=$?"
        daemon=""
    fi
}
# The control port is open before the daemon can answer the host, so no command is lost.
stty -F /dev/ttyS1 raw -echo 115200 2>/dev/null
exec 3<>/dev/ttyS1
log "boot $(cut -d' ' -f1 /proc/uptime) s, starting the service"
start_daemon
while read -r cmd <&3; do
    cmd=$(printf '%s' "$cmd" | tr -d '\r')
    case "$cmd" in
        ping) echo pong >&3 ;;
        verify)
            stop_daemon
            ./verify > /tmp/verify.txt 2>&1
            status=$?
            grep -v '^segment \|^source .* missing=0 duplicates=0' /tmp/verify.txt > /tmp/report.txt
            cat /tmp/report.txt > /dev/console
            start_daemon
            echo "verify exit=$status lines=$(wc -l < /tmp/report.txt)" >&3
            cat /tmp/report.txt >&3
            ;;
        poweroff)
            stop_daemon
            sync
            umount /data
            echo "bye" >&3
            echo o > /proc/sysrq-trigger
            ;;
        "") ;;
        *) echo "unknown command: $cmd" >&3 ;;
    esac
done
log "control channel closed"
sleep 100000
