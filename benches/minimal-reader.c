/* The physical limit for `exliar scan` on a host tree: a minimal reader of
 * the same files, with nothing else (no parsing beyond what decides which
 * file comes next, no names, no analysis, no output but a count).
 *
 *     gcc -O2 -o minimal-reader benches/minimal-reader.c
 *     minimal-reader ROOT
 *
 * Per PCI function, as exliar reads it: the sys/bus/pci/devices/ADDR link
 * (parents), the device folder opened once and listed, `uevent` (class,
 * ids, subsystem ids, driver) and `revision`, the `driver`, `iommu_group`, `physfn` and
 * `virtfnN` links where listed, `driver_override` and `reset_method`,
 * `boot_vga` for a VGA function, and for a function that is not an SR-IOV
 * virtual function `numa_node` and the four link attributes, plus
 * `sriov_totalvfs` / `sriov_numvfs` where listed. Once: pci.ids (streamed
 * through a 64 KiB buffer, not parsed) and the iommu_groups listing.
 * Single-threaded. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static char big[64 << 10];
static long bytes;

static void list(int fd, void (*each)(const char *, unsigned char, void *), void *arg) {
    for (;;) {
        long n = syscall(SYS_getdents64, fd, big, sizeof big);
        if (n <= 0) break;
        for (long off = 0; off < n;) {
            struct { unsigned long ino; long off; unsigned short reclen; unsigned char type; char name[]; } *d = (void *)(big + off);
            each(d->name, d->type, arg);
            off += d->reclen;
        }
    }
}

static void slurp(int dir, const char *name) {
    char buf[4097];
    int fd = openat(dir, name, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
    if (fd < 0) return;
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) bytes += n;
    close(fd);
}

static void link_(int dir, const char *name) {
    char buf[512];
    ssize_t n = readlinkat(dir, name, buf, sizeof buf);
    if (n > 0) bytes += n;
}

struct seen { int physfn, driver, iommu, totalvfs; char virtfn[256][16]; int nvf; };

static void note(const char *name, unsigned char type, void *arg) {
    struct seen *s = arg;
    (void)type;
    if (!strcmp(name, "physfn")) s->physfn = 1;
    else if (!strcmp(name, "driver")) s->driver = 1;
    else if (!strcmp(name, "iommu_group")) s->iommu = 1;
    else if (!strcmp(name, "sriov_totalvfs")) s->totalvfs = 1;
    else if (!strncmp(name, "virtfn", 6) && s->nvf < 256) snprintf(s->virtfn[s->nvf++], 16, "%s", name);
}

static int functions;
static int root, sysdevs, busdevs;

static void device(const char *name, unsigned char type, void *arg) {
    (void)type; (void)arg;
    if (name[0] == '.') return;
    char target[512];
    ssize_t n = readlinkat(busdevs, name, target, sizeof target - 1);
    if (n <= 0) return;
    target[n] = 0;
    const char *rest = strncmp(target, "../../../devices/", 17) ? NULL : target + 17;
    int dir = rest ? openat(sysdevs, rest, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (dir < 0) return;
    struct seen s = {0};
    list(dir, note, &s);
    char ev[4097];
    int vga = 0;
    int efd = openat(dir, "uevent", O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
    if (efd >= 0) {
        ssize_t n = read(efd, ev, sizeof ev - 1);
        if (n > 0) { bytes += n; ev[n] = 0; vga = strstr(ev, "PCI_CLASS=300") != NULL; }
        close(efd);
    }
    slurp(dir, "revision");
    if (s.driver) link_(dir, "driver");
    if (s.iommu) link_(dir, "iommu_group");
    slurp(dir, "driver_override");
    slurp(dir, "reset_method");
    if (vga) slurp(dir, "boot_vga");
    if (!s.physfn) {
        slurp(dir, "numa_node");
        slurp(dir, "current_link_speed");
        slurp(dir, "current_link_width");
        slurp(dir, "max_link_speed");
        slurp(dir, "max_link_width");
    } else {
        link_(dir, "physfn");
    }
    if (s.totalvfs) { slurp(dir, "sriov_totalvfs"); slurp(dir, "sriov_numvfs"); }
    for (int i = 0; i < s.nvf; i++) link_(dir, s.virtfn[i]);
    close(dir);
    functions++;
}

static void ignore(const char *name, unsigned char type, void *arg) { (void)name; (void)type; (void)arg; }

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: %s ROOT\n", argv[0]); return 2; }
    root = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root < 0) { perror(argv[1]); return 1; }
    int ids = openat(root, "usr/share/misc/pci.ids", O_RDONLY | O_CLOEXEC);
    if (ids >= 0) {
        /* Streamed through one 64 KiB buffer, as exliar's index pass reads
         * it (not parsed; exliar also stops at the vendor list's end and
         * then reads the few vendor blocks it needs). */
        long n;
        while ((n = read(ids, big, sizeof big)) > 0) bytes += n;
        close(ids);
    }
    sysdevs = openat(root, "sys/devices", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    busdevs = openat(root, "sys/bus/pci/devices", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (busdevs < 0 || sysdevs < 0) { perror("sys/bus/pci/devices"); return 1; }
    /* The listing first (exliar sorts addresses before reading). */
    static char names[1 << 20];
    size_t used = 0;
    int count = 0;
    for (;;) {
        long n = syscall(SYS_getdents64, busdevs, big, sizeof big);
        if (n <= 0) break;
        for (long off = 0; off < n;) {
            struct { unsigned long ino; long off; unsigned short reclen; unsigned char type; char name[]; } *d = (void *)(big + off);
            size_t l = strlen(d->name) + 1;
            if (d->name[0] != '.' && used + l < sizeof names) { memcpy(names + used, d->name, l); used += l; count++; }
            off += d->reclen;
        }
    }
    for (size_t off = 0; off < used; off += strlen(names + off) + 1) device(names + off, 0, NULL);
    int groups = openat(root, "sys/kernel/iommu_groups", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (groups >= 0) { list(groups, ignore, NULL); close(groups); }
    printf("%d functions, %ld bytes\n", functions, bytes);
    return functions == count ? 0 : 1;
}
