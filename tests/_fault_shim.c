/* Fault injection below SQLite and the file store: an LD_PRELOAD library that fails (or
 * crashes at) the N-th file operation on paths under one directory.
 *
 * SQLite does its own I/O in C, through libc, where Python cannot reach; preloaded, this
 * library's write, pwrite, fsync, ftruncate, open (with O_CREAT), rename, link, unlink and
 * mkdir stand in front of libc's for everyone in the process: SQLite, and Python's os module
 * too. Disarmed (the default) each costs one branch. Armed with fault_arm(), the calls on
 * files under ``dir`` are counted, and the ``at``-th fails with ``err`` (``sticky``: that one
 * and every later one, the first write of them cut short, as on a disk that filled up), or
 * the process exits at once with status 77 (``crash`` 1), as if SIGKILLed just before it,
 * or right after it (``crash`` 2). With ``only_writes``, only write and pwrite count, and
 * the ``at``-th is cut short (half its bytes written), once. ``fault_kind`` names the call
 * that failed last.
 *
 * Built by tests/_sqlite_faults.py with the system C compiler.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

static long fault_at;      /* 0: disarmed */
static long calls;
static long fired;
static int fault_errno = EIO;
static int sticky;
static int crash;
static int only_writes;
static const char *kind = "";
static char prefix[PATH_MAX];
static size_t prefix_len;

void fault_arm(long at, int err, int stick, int crash_now, const char *dir, int writes) {
    snprintf(prefix, sizeof prefix, "%s/", dir);
    prefix_len = strlen(prefix);
    calls = 0;
    fired = 0;
    fault_errno = err;
    sticky = stick;
    crash = crash_now;
    only_writes = writes;
    kind = "";
    fault_at = at;
}

void fault_disarm(void) { fault_at = 0; }
long fault_calls(void) { return calls; }
long fault_fired(void) { return fired; }
const char *fault_kind(void) { return kind; }

static int path_under(const char *path) {
    return path != NULL && strncmp(path, prefix, prefix_len) == 0;
}

static int fd_under(int fd) {
    char link[64], target[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0) return 0;
    target[n] = '\0';
    return path_under(target);
}

static int at_under(int dirfd, const char *path) {
    char full[PATH_MAX];
    if (path == NULL) return 0;
    if (path[0] == '/') return path_under(path);
    if (dirfd == AT_FDCWD) {
        if (getcwd(full, sizeof full) == NULL) return 0;
    } else {
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
        ssize_t n = readlink(link, full, sizeof full - 1);
        if (n <= 0) return 0;
        full[n] = '\0';
    }
    size_t len = strlen(full);
    snprintf(full + len, sizeof full - len, "/%s", path);
    return path_under(full);
}

/* 0: go on; 1: fail this call; 2: fail it as a short write; 3: exit right after it. */
static int hit(int is_write, const char *name) {
    if (only_writes && !is_write) return 0;
    calls++;
    if (calls == fault_at || (sticky && calls > fault_at)) {
        fired++;
        kind = name;
        if (crash == 1) _exit(77);
        if (crash == 2) return 3;
        if (only_writes) return 2;
        return (sticky && fired == 1) ? 2 : 1;
    }
    return 0;
}

#define REAL(type, name, ...) \
    static type (*real)(__VA_ARGS__); \
    if (real == NULL) real = (type (*)(__VA_ARGS__))dlsym(RTLD_NEXT, name)

#define FAIL(value) do { errno = fault_errno; return value; } while (0)

/* A call that is not a write: ``cond`` says it is on a file under the directory. */
#define GUARDED(cond, name, failed, call) do { \
        int how = (fault_at && (cond)) ? hit(0, name) : 0; \
        if (how == 3) { (void)(call); _exit(77); } \
        if (how) FAIL(failed); \
        return call; \
    } while (0)

/* A write of ``n`` bytes: cut short (``short_call``) or failed, or the process exits after it. */
#define WRITE_GUARDED(fd, n, name, call, short_call) do { \
        int how = (fault_at && fd_under(fd)) ? hit(1, name) : 0; \
        if (how == 2 && (n) > 1) return short_call; \
        if (how == 3) { (void)(call); _exit(77); } \
        if (how) FAIL(-1); \
        return call; \
    } while (0)

ssize_t write(int fd, const void *buf, size_t n) {
    REAL(ssize_t, "write", int, const void *, size_t);
    WRITE_GUARDED(fd, n, "write", real(fd, buf, n), real(fd, buf, n / 2));
}

static ssize_t pwrite_common(ssize_t (*real)(int, const void *, size_t, off_t), int fd,
                             const void *buf, size_t n, off_t offset) {
    WRITE_GUARDED(fd, n, "pwrite", real(fd, buf, n, offset), real(fd, buf, n / 2, offset));
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t offset) {
    REAL(ssize_t, "pwrite", int, const void *, size_t, off_t);
    return pwrite_common(real, fd, buf, n, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t offset) {
    REAL(ssize_t, "pwrite64", int, const void *, size_t, off_t);
    return pwrite_common(real, fd, buf, n, offset);
}

ssize_t writev(int fd, const struct iovec *iov, int count) {
    REAL(ssize_t, "writev", int, const struct iovec *, int);
    GUARDED(fd_under(fd), "writev", -1, real(fd, iov, count));
}

int fsync(int fd) {
    REAL(int, "fsync", int);
    GUARDED(fd_under(fd), "fsync", -1, real(fd));
}

int fdatasync(int fd) {
    REAL(int, "fdatasync", int);
    GUARDED(fd_under(fd), "fdatasync", -1, real(fd));
}

int ftruncate(int fd, off_t length) {
    REAL(int, "ftruncate", int, off_t);
    GUARDED(fd_under(fd), "ftruncate", -1, real(fd, length));
}

int ftruncate64(int fd, off_t length) {
    REAL(int, "ftruncate64", int, off_t);
    GUARDED(fd_under(fd), "ftruncate", -1, real(fd, length));
}

static int open_counts(int dirfd, const char *path, int flags) {
    return (flags & O_CREAT) && at_under(dirfd, path);
}

#define OPEN_MODE(flags, mode) \
    mode_t mode = 0; \
    if ((flags) & (O_CREAT | O_TMPFILE)) { \
        va_list args; va_start(args, flags); mode = va_arg(args, mode_t); va_end(args); \
    }

int open(const char *path, int flags, ...) {
    REAL(int, "open", const char *, int, ...);
    OPEN_MODE(flags, mode);
    GUARDED(open_counts(AT_FDCWD, path, flags), "open", -1, real(path, flags, mode));
}

int open64(const char *path, int flags, ...) {
    REAL(int, "open64", const char *, int, ...);
    OPEN_MODE(flags, mode);
    GUARDED(open_counts(AT_FDCWD, path, flags), "open", -1, real(path, flags, mode));
}

int openat(int dirfd, const char *path, int flags, ...) {
    REAL(int, "openat", int, const char *, int, ...);
    OPEN_MODE(flags, mode);
    GUARDED(open_counts(dirfd, path, flags), "open", -1, real(dirfd, path, flags, mode));
}

int openat64(int dirfd, const char *path, int flags, ...) {
    REAL(int, "openat64", int, const char *, int, ...);
    OPEN_MODE(flags, mode);
    GUARDED(open_counts(dirfd, path, flags), "open", -1, real(dirfd, path, flags, mode));
}

int rename(const char *from, const char *to) {
    REAL(int, "rename", const char *, const char *);
    GUARDED(at_under(AT_FDCWD, to), "rename", -1, real(from, to));
}

int renameat(int fromfd, const char *from, int tofd, const char *to) {
    REAL(int, "renameat", int, const char *, int, const char *);
    GUARDED(at_under(tofd, to), "rename", -1, real(fromfd, from, tofd, to));
}

int link(const char *from, const char *to) {
    REAL(int, "link", const char *, const char *);
    GUARDED(at_under(AT_FDCWD, to), "link", -1, real(from, to));
}

int linkat(int fromfd, const char *from, int tofd, const char *to, int flags) {
    REAL(int, "linkat", int, const char *, int, const char *, int);
    GUARDED(at_under(tofd, to), "link", -1, real(fromfd, from, tofd, to, flags));
}

int unlink(const char *path) {
    REAL(int, "unlink", const char *);
    GUARDED(at_under(AT_FDCWD, path), "unlink", -1, real(path));
}

int unlinkat(int dirfd, const char *path, int flags) {
    REAL(int, "unlinkat", int, const char *, int);
    GUARDED(at_under(dirfd, path), "unlink", -1, real(dirfd, path, flags));
}

int mkdir(const char *path, mode_t mode) {
    REAL(int, "mkdir", const char *, mode_t);
    GUARDED(at_under(AT_FDCWD, path), "mkdir", -1, real(path, mode));
}

int mkdirat(int dirfd, const char *path, mode_t mode) {
    REAL(int, "mkdirat", int, const char *, mode_t);
    GUARDED(at_under(dirfd, path), "mkdir", -1, real(dirfd, path, mode));
}
