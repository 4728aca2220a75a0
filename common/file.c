/*
 * file.c - whole-file reads with a size bound and crash-safe atomic writes.
 *
 * For small files that must be either entirely old or entirely new after a
 * crash (key files, genesis files, configuration). Not for large or streaming
 * data: everything is read into or written from one buffer.
 */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { TEMP_NAME_ATTEMPTS_MAX = 16 };

/* write() all of DATA, retrying short writes and EINTR. Returns 0 or -errno. */
static int write_all(int fd, const uint8_t *data, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, data + done, len - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        done += (size_t)n;
    }
    EHR_ASSERT(done == len);
    return 0;
}

/* read() until LEN bytes or end of file. Returns the count read or -errno. */
static ssize_t read_full(int fd, uint8_t *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = read(fd, buf + done, len - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        done += (size_t)n;
    }
    EHR_ASSERT(done <= len);
    return (ssize_t)done;
}

/* Split PATH into its directory (DIR, "." when PATH has no slash) and base name. */
static int path_split(const char *path, char dir[PATH_MAX], const char **base)
{
    size_t len = strlen(path);
    if (len == 0 || len >= PATH_MAX)
        return len == 0 ? -EINVAL : -ENAMETOOLONG;
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        memcpy(dir, ".", 2);
        *base = path;
    } else if (slash == path) {
        memcpy(dir, "/", 2);
        *base = slash + 1;
    } else {
        size_t dir_len = (size_t)(slash - path);
        memcpy(dir, path, dir_len);
        dir[dir_len] = '\0';
        *base = slash + 1;
    }
    if ((*base)[0] == '\0')
        return -EISDIR; /* PATH ends with a slash */
    return 0;
}

/* Create a fresh temporary file next to the target, O_EXCL so we never reuse one. */
static int temp_create(const char *dir, const char *base, unsigned mode, char temp[PATH_MAX])
{
    for (int attempt = 0; attempt < TEMP_NAME_ATTEMPTS_MAX; attempt++) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        int n = snprintf(temp, PATH_MAX, "%s/.%s.tmp-%ld-%ld-%d", dir, base, (long)getpid(),
                         (long)now.tv_nsec, attempt);
        if (n < 0 || n >= PATH_MAX)
            return -ENAMETOOLONG;
        int fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, (mode_t)mode);
        if (fd >= 0)
            return fd;
        if (errno != EEXIST)
            return -errno;
    }
    return -EEXIST;
}

/* Move TEMP to PATH; without OVERWRITE fail with EHR_EEXIST if PATH exists (atomically). */
static int temp_publish(const char *temp, const char *path, bool overwrite)
{
    if (overwrite)
        return rename(temp, path) == 0 ? 0 : -errno;
    if (renameat2(AT_FDCWD, temp, AT_FDCWD, path, RENAME_NOREPLACE) == 0)
        return 0;
    if (errno == EEXIST)
        return EHR_EEXIST;
    if (errno != EINVAL && errno != ENOSYS)
        return -errno;
    /* The file system cannot rename without replacing: link() never replaces either. */
    if (link(temp, path) != 0)
        return errno == EEXIST ? EHR_EEXIST : -errno;
    unlink(temp);
    return 0;
}

int ehr_pwrite_all(int fd, const uint8_t *data, size_t len, uint64_t offset)
{
    while (len > 0) {
        ssize_t w = pwrite(fd, data, len, (off_t)offset);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        data += w;
        len -= (size_t)w;
        offset += (uint64_t)w;
    }
    return 0;
}

int ehr_pread_all(int fd, uint8_t *data, size_t len, uint64_t offset)
{
    while (len > 0) {
        ssize_t r = pread(fd, data, len, (off_t)offset);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return EHR_ETRUNCATED;
        data += r;
        len -= (size_t)r;
        offset += (uint64_t)r;
    }
    return 0;
}

int ehr_dir_sync(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

int ehr_file_write_atomic(const char *path, const void *data, size_t len, unsigned mode,
                          bool overwrite)
{
    EHR_ASSERT(path != NULL);
    EHR_ASSERT(data != NULL || len == 0);
    char dir[PATH_MAX], temp[PATH_MAX];
    const char *base;
    int rc = path_split(path, dir, &base);
    if (rc != 0)
        return rc;
    if (!overwrite && access(path, F_OK) == 0)
        return EHR_EEXIST; /* early and cheap; temp_publish re-checks atomically */
    int fd = temp_create(dir, base, mode, temp);
    if (fd < 0)
        return fd;
    /* The exact MODE, whatever the umask: a key file must come out 0600. */
    rc = fchmod(fd, (mode_t)mode) == 0 ? 0 : -errno;
    if (rc == 0)
        rc = write_all(fd, data, len);
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0)
        rc = temp_publish(temp, path, overwrite);
    if (rc != 0) {
        unlink(temp);
        return rc;
    }
    return ehr_dir_sync(dir);
}

/*
 * Open PATH for reading and check it is a regular file of at most MAX_BYTES.
 * O_NONBLOCK so that a FIFO (or a device) is refused at once instead of
 * blocking in open() until a writer appears; O_NOCTTY so that a terminal
 * named by mistake never becomes our controlling terminal. Neither flag
 * changes how a regular file reads, and only regular files get past fstat.
 */
static int open_bounded(const char *path, size_t max_bytes, size_t *size_out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return S_ISDIR(st.st_mode) ? -EISDIR : EHR_EINVAL;
    }
    if (st.st_size < 0 || (uint64_t)st.st_size > (uint64_t)max_bytes) {
        close(fd);
        return EHR_ETOOBIG;
    }
    *size_out = (size_t)st.st_size;
    return fd;
}

/* Read the rest of FD into BUF (capacity CAP); EHR_ETOOBIG if FD holds more. */
static int read_bounded_fd(int fd, uint8_t *buf, size_t cap, size_t *len_out)
{
    /* Read one byte past the capacity so a file that grew after fstat is caught. */
    ssize_t n = read_full(fd, buf, cap);
    if (n < 0)
        return (int)n;
    if ((size_t)n == cap) {
        uint8_t extra;
        ssize_t more = read_full(fd, &extra, 1);
        if (more != 0)
            return more < 0 ? (int)more : EHR_ETOOBIG;
    }
    *len_out = (size_t)n;
    return 0;
}

int ehr_file_read(const char *path, void *buf, size_t buf_size, size_t *len_out)
{
    EHR_ASSERT(path != NULL && len_out != NULL);
    EHR_ASSERT(buf != NULL || buf_size == 0);
    size_t size;
    int fd = open_bounded(path, buf_size, &size);
    if (fd < 0)
        return fd;
    int rc = read_bounded_fd(fd, buf, buf_size, len_out);
    close(fd);
    return rc;
}

int ehr_file_read_alloc(const char *path, size_t max_bytes, uint8_t **data_out, size_t *len_out)
{
    EHR_ASSERT(path != NULL && data_out != NULL && len_out != NULL);
    size_t size;
    int fd = open_bounded(path, max_bytes, &size);
    if (fd < 0)
        return fd;
    /* Allocate what fstat promised (already bounded by MAX_BYTES). */
    uint8_t *data = ehr_malloc(size);
    int rc = read_bounded_fd(fd, data, size, len_out);
    close(fd);
    if (rc != 0) {
        ehr_free(data);
        return rc;
    }
    *data_out = data;
    return 0;
}
