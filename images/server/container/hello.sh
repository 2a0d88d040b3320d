# The container's program (busybox sh, PID 1 of the container): one line
# that says where it runs, then a heartbeat file, forever.
echo "hello from a container: busybox on $(uname -sr), pid $$ in its namespace, hostname $(hostname)"
while true; do
    date +%s > /tmp/heartbeat
    sleep 1
done
