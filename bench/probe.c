/*
 * bench-probe: the floor of `make bench`, and its clock in the other images.
 *
 * As PID 1 (the floor image's /init) it does the least an init can do: it
 * reads CLOCK_BOOTTIME first thing (as keel does at its first instruction),
 * prints it, prints its own memory from /proc/1/smaps_rollup and powers off.
 *
 * As a command, in the busybox and keel images:
 *   bench-probe ready           print "bench: ready at MS ms" (CLOCK_BOOTTIME)
 *   bench-probe report          print PID 1's Rss and Private_Dirty
 *   bench-probe report --poweroff   the same, then SIGUSR2 to PID 1 (keel powers off)
 *   bench-probe service         one of the 10 services: when NOTIFY_SOCKET is set,
 *                               send READY=1 from this, the service's main process
 *                               (as etcd does), then stay up until killed
 *
 * Built static by bench/boot_compare.py: gcc -static -Os -o bench/out/bench-probe bench/probe.c
 */
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static double boottime_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_BOOTTIME, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/*
 * Prints "bench: pid1 rss_kb=N private_dirty_kb=M anon_kb=A" from
 * /proc/1/smaps_rollup. Files in an initramfs live in ramfs, whose pages are
 * always dirty: a binary that only PID 1 maps counts its text as
 * Private_Dirty. Anonymous is the heap, stacks and data written.
 */
static int report(void)
{
	char line[256];
	long rss = -1, dirty = -1, anon = -1, v;
	FILE *f = fopen("/proc/1/smaps_rollup", "r");
	if (!f) {
		perror("bench: /proc/1/smaps_rollup");
		return 1;
	}
	while (fgets(line, sizeof line, f)) {
		if (sscanf(line, "Rss: %ld kB", &v) == 1)
			rss = v;
		else if (sscanf(line, "Private_Dirty: %ld kB", &v) == 1)
			dirty = v;
		else if (sscanf(line, "Anonymous: %ld kB", &v) == 1)
			anon = v;
	}
	fclose(f);
	printf("bench: pid1 rss_kb=%ld private_dirty_kb=%ld anon_kb=%ld\n", rss, dirty, anon);
	fflush(stdout);
	return rss < 0 || dirty < 0 || anon < 0;
}

/* sd_notify(READY=1): a datagram to $NOTIFY_SOCKET (a path, or abstract with '@'). */
static int notify_ready(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len = strlen(path);
	int fd;
	if (len == 0 || len >= sizeof sa.sun_path)
		return -1;
	memcpy(sa.sun_path, path, len);
	if (path[0] == '@')
		sa.sun_path[0] = 0;
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (sendto(fd, "READY=1", 7, 0, (struct sockaddr *)&sa,
		   (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) != 7) {
		close(fd);
		return -1;
	}
	return close(fd);
}

int main(int argc, char **argv)
{
	double now = boottime_ms();
	if (getpid() == 1) {
		mount("proc", "/proc", "proc", 0, NULL);
		printf("bench: init at %.1f ms\nbench: ready at %.1f ms\n", now, now);
		fflush(stdout);
		report();
		sync();
		reboot(RB_POWER_OFF);
		for (;;)
			pause();
	}
	if (argc >= 2 && strcmp(argv[1], "ready") == 0) {
		printf("bench: ready at %.1f ms\n", now);
		return 0;
	}
	if (argc >= 2 && strcmp(argv[1], "init") == 0) {
		printf("bench: init at %.1f ms\n", now);
		return 0;
	}
	if (argc >= 2 && strcmp(argv[1], "report") == 0) {
		int rc = report();
		if (argc >= 3 && strcmp(argv[2], "--poweroff") == 0 && kill(1, SIGUSR2) != 0) {
			perror("bench: kill(1, SIGUSR2)");
			return 1;
		}
		return rc;
	}
	if (argc >= 2 && strcmp(argv[1], "service") == 0) {
		const char *sock = getenv("NOTIFY_SOCKET");
		if (sock && notify_ready(sock) != 0) {
			perror("bench: sd_notify");
			return 1;
		}
		for (;;)
			pause();
	}
	fprintf(stderr, "usage: bench-probe ready|init|report [--poweroff]|service\n");
	return 100;
}
