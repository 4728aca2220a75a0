/*
 * blobs.c - the blob store (blobs.h): content-addressed files written
 * atomically, read in chunks, deleted durably, and the sweep of unfinished
 * writes.
 *
 * POSIX caveats where they bite: rename(2) is atomic within one file
 * system, hence the temporary file in the blob's own directory; a rename
 * (and a new directory entry) is durable only once the directory is
 * fsync'd, hence the fsync of the sub-directory after every rename and of
 * blobs/ after a sub-directory is made; write(2) may write less than asked
 * and be interrupted, hence the loop.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blobs.h"

static int fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

int node_blob_id_parse(const char *hex, uint8_t id[NODE_BLOB_ID_BYTES])
{
    if (hex == NULL || strnlen(hex, NODE_BLOB_ID_HEX_BYTES + 1) != NODE_BLOB_ID_HEX_BYTES)
        return EHR_EINVAL;
    for (size_t i = 0; i < NODE_BLOB_ID_HEX_BYTES; i++) {
        char c = hex[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return EHR_EINVAL; /* invariant 1: never '/', '.', upper case */
    }
    return ehr_hex_decode(id, NODE_BLOB_ID_BYTES, hex) == 0 ? 0 : EHR_EINVAL;
}

void node_blob_id_hex(char out[NODE_BLOB_ID_HEX_BYTES + 1], const uint8_t id[NODE_BLOB_ID_BYTES])
{
    ehr_hex_encode(out, id, NODE_BLOB_ID_BYTES);
    out[NODE_BLOB_ID_HEX_BYTES] = '\0';
}

/* DIR/blobs/XX and DIR/blobs/XX/YYYY... of ID. */
static void blob_paths(const struct node_blobs *store, const uint8_t id[NODE_BLOB_ID_BYTES],
                       char sub_dir[NODE_BLOB_PATH_BYTES_MAX],
                       char final_path[NODE_BLOB_PATH_BYTES_MAX])
{
    char hex[NODE_BLOB_ID_HEX_BYTES + 1];
    node_blob_id_hex(hex, id);
    int n = snprintf(sub_dir, NODE_BLOB_PATH_BYTES_MAX, "%s/%.2s", store->dir, hex);
    EHR_ASSERT(n > 0 && n < NODE_BLOB_PATH_BYTES_MAX); /* node_blobs_open left room */
    n = snprintf(final_path, NODE_BLOB_PATH_BYTES_MAX, "%s/%.2s/%s", store->dir, hex, hex + 2);
    EHR_ASSERT(n > 0 && n < NODE_BLOB_PATH_BYTES_MAX);
}

/* Is NAME a name the store makes for a temporary file? */
static bool is_tmp_name(const char *name)
{
    return strncmp(name, NODE_BLOB_TMP_PREFIX, sizeof NODE_BLOB_TMP_PREFIX - 1) == 0;
}

/* Is NAME one of the 256 sub-directories ("00".."ff")? */
static bool is_sub_dir_name(const char *name)
{
    for (int i = 0; i < 2; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
            return false;
    return name[2] == '\0';
}

/* Remove the temporary files under STORE's sub-directories (invariant 3). */
static int sweep(struct node_blobs *store, uint64_t *swept, ehr_diag *diag)
{
    DIR *top = opendir(store->dir);
    if (top == NULL)
        return ehr_diag_fail(diag, -errno, "cannot list %s: %s", store->dir, strerror(errno));
    int rc = 0;
    struct dirent *d;
    while (rc == 0 && (d = readdir(top)) != NULL) {
        if (!is_sub_dir_name(d->d_name))
            continue;
        char sub[NODE_BLOB_PATH_BYTES_MAX + 4]; /* DIR/blobs, '/', two digits (checked) */
        snprintf(sub, sizeof sub, "%s/%.2s", store->dir, d->d_name);
        DIR *s = opendir(sub);
        if (s == NULL)
            continue; /* not a directory: not ours to judge */
        bool removed = false;
        struct dirent *e;
        while ((e = readdir(s)) != NULL) {
            if (!is_tmp_name(e->d_name))
                continue;
            if (unlinkat(dirfd(s), e->d_name, 0) != 0) {
                rc = ehr_diag_fail(diag, -errno, "cannot remove %s/%s: %s", sub, e->d_name,
                                   strerror(errno));
                break;
            }
            removed = true;
            (*swept)++;
        }
        closedir(s);
        if (rc == 0 && removed)
            rc = fsync_dir(sub);
    }
    closedir(top);
    return rc;
}

int node_blobs_open(struct node_blobs *store, const char *datadir, uint64_t bytes_max,
                    uint64_t *swept, ehr_diag *diag)
{
    EHR_ASSERT(bytes_max > 0);
    memset(store, 0, sizeof *store);
    store->dir_fd = -1;
    store->bytes_max = bytes_max;
    uint64_t swept_count = 0;
    if (swept != NULL)
        *swept = 0;
    /* Room for "/XX/.tmp-" + 64 + "-" + 16 after DIR/blobs. */
    size_t room = NODE_BLOB_PATH_BYTES_MAX - 100;
    int n = snprintf(store->dir, sizeof store->dir, "%s/%s", datadir, NODE_BLOBS_DIR_NAME);
    if (n < 0 || (size_t)n >= room)
        return ehr_diag_fail(diag, EHR_EINVAL, "data directory path too long (over %zu bytes)",
                             room);
    if (mkdir(store->dir, 0700) == 0) {
        int rc = fsync_dir(datadir);
        if (rc != 0)
            return ehr_diag_fail(diag, rc, "cannot sync %s: %s", datadir, strerror(-rc));
    } else if (errno != EEXIST) {
        return ehr_diag_fail(diag, -errno, "cannot create %s: %s", store->dir, strerror(errno));
    }
    store->dir_fd = open(store->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (store->dir_fd < 0)
        return ehr_diag_fail(diag, -errno, "cannot open %s: %s", store->dir, strerror(errno));
    int rc = sweep(store, &swept_count, diag);
    if (swept != NULL)
        *swept = swept_count;
    if (rc != 0)
        node_blobs_close(store);
    return rc;
}

void node_blobs_close(struct node_blobs *store)
{
    if (store->dir_fd >= 0)
        close(store->dir_fd);
    store->dir_fd = -1;
}

int node_blobs_stat(const struct node_blobs *store, const uint8_t id[NODE_BLOB_ID_BYTES],
                    uint64_t *size)
{
    char sub[NODE_BLOB_PATH_BYTES_MAX], path[NODE_BLOB_PATH_BYTES_MAX];
    blob_paths(store, id, sub, path);
    struct stat st;
    if (stat(path, &st) != 0)
        return errno == ENOENT ? EHR_ENOTFOUND : -errno;
    if (!S_ISREG(st.st_mode))
        return EHR_ENOTFOUND;
    if (size != NULL)
        *size = (uint64_t)st.st_size;
    return 0;
}

int node_blobs_remove(const struct node_blobs *store, const uint8_t id[NODE_BLOB_ID_BYTES],
                      ehr_diag *diag)
{
    EHR_ASSERT(store->dir_fd >= 0);
    char sub[NODE_BLOB_PATH_BYTES_MAX], path[NODE_BLOB_PATH_BYTES_MAX];
    blob_paths(store, id, sub, path);
    if (unlink(path) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return EHR_ENOTFOUND;
        return ehr_diag_fail(diag, -errno, "cannot remove %s: %s", path, strerror(errno));
    }
    /* The unlink is durable only once the directory is. */
    int rc = fsync_dir(sub);
    if (rc != 0)
        return ehr_diag_fail(diag, rc, "cannot fsync %s: %s", sub, strerror(-rc));
    return 0;
}

int node_blob_write_begin(const struct node_blobs *store, const uint8_t id[NODE_BLOB_ID_BYTES],
                          struct node_blob_writer *w, ehr_diag *diag)
{
    EHR_ASSERT(store->dir_fd >= 0);
    memset(w, 0, sizeof *w);
    w->store = store;
    w->fd = -1;
    memcpy(w->id, id, NODE_BLOB_ID_BYTES);
    blob_paths(store, id, w->sub_dir, w->final_path);
    if (mkdir(w->sub_dir, 0700) == 0)
        w->sub_dir_created = true;
    else if (errno != EEXIST)
        return ehr_diag_fail(diag, -errno, "cannot create %s: %s", w->sub_dir, strerror(errno));
    char hex[NODE_BLOB_ID_HEX_BYTES + 1], nonce_hex[17];
    uint8_t nonce[8];
    node_blob_id_hex(hex, id);
    ehr_random_bytes(nonce, sizeof nonce);
    ehr_hex_encode(nonce_hex, nonce, sizeof nonce);
    nonce_hex[16] = '\0';
    int n = snprintf(w->tmp_path, sizeof w->tmp_path, "%s/" NODE_BLOB_TMP_PREFIX "%s-%s",
                     w->sub_dir, hex, nonce_hex);
    EHR_ASSERT(n > 0 && (size_t)n < sizeof w->tmp_path);
    w->fd = open(w->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (w->fd < 0)
        return ehr_diag_fail(diag, -errno, "cannot create %s: %s", w->tmp_path, strerror(errno));
    ehr_content_hash_init(&w->hash);
    return 0;
}

int node_blob_write(struct node_blob_writer *w, const void *data, size_t len, ehr_diag *diag)
{
    EHR_ASSERT(w->fd >= 0);
    if (len > w->store->bytes_max - w->bytes)
        return ehr_diag_fail(
            diag, EHR_ETOOBIG, "blob over the limit of %llu bytes (%llu written, %zu more sent)",
            (unsigned long long)w->store->bytes_max, (unsigned long long)w->bytes, len);
    const uint8_t *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t k = write(w->fd, p, left);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return ehr_diag_fail(diag, -errno, "cannot write %s: %s", w->tmp_path, strerror(errno));
        p += k;
        left -= (size_t)k;
    }
    ehr_content_hash_update(&w->hash, data, len);
    w->bytes += len;
    EHR_ASSERT(w->bytes <= w->store->bytes_max);
    return 0;
}

void node_blob_write_abort(struct node_blob_writer *w)
{
    if (w->fd < 0)
        return;
    close(w->fd);
    w->fd = -1;
    ehr_content_hash_clear(&w->hash);
    if (unlink(w->tmp_path) == 0)
        (void)fsync_dir(w->sub_dir); /* best effort: the sweep removes what a crash keeps */
}

int node_blob_write_commit(struct node_blob_writer *w, ehr_diag *diag)
{
    EHR_ASSERT(w->fd >= 0);
    uint8_t got[NODE_BLOB_ID_BYTES];
    struct ehr_content_hash h = w->hash;
    w->hash.ctx_ = NULL;
    ehr_content_hash_final(&h, got);
    if (memcmp(got, w->id, NODE_BLOB_ID_BYTES) != 0) {
        char want_hex[NODE_BLOB_ID_HEX_BYTES + 1], got_hex[NODE_BLOB_ID_HEX_BYTES + 1];
        node_blob_id_hex(want_hex, w->id);
        node_blob_id_hex(got_hex, got);
        node_blob_write_abort(w);
        return ehr_diag_fail(diag, EHR_EINVAL,
                             "the content's SHA-256 is %s, not the claimed blob id %s", got_hex,
                             want_hex);
    }
    int rc = 0;
    if (fsync(w->fd) != 0)
        rc = ehr_diag_fail(diag, -errno, "cannot sync %s: %s", w->tmp_path, strerror(errno));
    if (rc == 0 && rename(w->tmp_path, w->final_path) != 0)
        rc = ehr_diag_fail(diag, -errno, "cannot rename %s to %s: %s", w->tmp_path, w->final_path,
                           strerror(errno));
    if (rc != 0) {
        node_blob_write_abort(w);
        return rc;
    }
    close(w->fd);
    w->fd = -1;
    rc = fsync_dir(w->sub_dir);
    if (rc == 0 && w->sub_dir_created)
        rc = fsync_dir(w->store->dir);
    if (rc != 0) {
        /* Renamed but not known durable: take it back, so that what is
         * acknowledged is what survives (invariant 2). */
        unlink(w->final_path);
        return ehr_diag_fail(diag, rc, "cannot sync %s: %s", w->sub_dir, strerror(-rc));
    }
    return 0;
}

int node_blob_read_open(const struct node_blobs *store, const uint8_t id[NODE_BLOB_ID_BYTES],
                        struct node_blob_reader *r, ehr_diag *diag)
{
    char sub[NODE_BLOB_PATH_BYTES_MAX], path[NODE_BLOB_PATH_BYTES_MAX];
    blob_paths(store, id, sub, path);
    memset(r, 0, sizeof *r);
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) {
        if (errno == ENOENT)
            return ehr_diag_fail(diag, EHR_ENOTFOUND, "no blob with this id is stored here");
        return ehr_diag_fail(diag, -errno, "cannot open %s: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(r->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int rc = ehr_diag_fail(diag, EHR_ECORRUPT, "%s is not a regular file", path);
        node_blob_read_close(r);
        return rc;
    }
    r->size = (uint64_t)st.st_size;
    return 0;
}

long node_blob_read(struct node_blob_reader *r, uint8_t *buf, size_t cap, ehr_diag *diag)
{
    EHR_ASSERT(r->fd >= 0);
    for (;;) {
        ssize_t k = read(r->fd, buf, cap);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return ehr_diag_fail(diag, -errno, "cannot read a blob: %s", strerror(errno));
        r->offset += (uint64_t)k;
        return (long)k;
    }
}

int node_blob_read_seek(struct node_blob_reader *r, uint64_t offset, ehr_diag *diag)
{
    EHR_ASSERT(r->fd >= 0);
    if (offset > r->size || offset > (uint64_t)INT64_MAX)
        return ehr_diag_fail(diag, EHR_EINVAL,
                             "offset %" PRIu64 " is past the blob's %" PRIu64 " bytes", offset,
                             r->size);
    if (lseek(r->fd, (off_t)offset, SEEK_SET) < 0)
        return ehr_diag_fail(diag, -errno, "cannot seek in a blob: %s", strerror(errno));
    r->offset = offset;
    return 0;
}

void node_blob_read_close(struct node_blob_reader *r)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
}
