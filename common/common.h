/*
 * common.h - what every ehrchain module shares: one error enum, one
 * allocation wrapper, hex encoding, the structured logger and small-file
 * reads and atomic writes.
 *
 * It depends on libc only, so the consensus core may use it. It is not a
 * grab bag: anything that belongs to one module lives in that module.
 */
#ifndef EHR_COMMON_H
#define EHR_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Errors. Functions return 0 on success and a negative code on failure:
 * either one of these or a system error as -errno. Our codes start far below
 * any errno so the two ranges never meet.
 */
enum ehr_err {
    EHR_OK = 0,
    EHR_EINVAL = -10000, /* malformed input or a bad argument */
    EHR_ETOOBIG,         /* input over a named limit */
    EHR_ETRUNCATED,      /* input shorter than its own framing says */
    EHR_ECORRUPT,        /* stored data fails its checksum or format */
    EHR_EBADSIG,         /* a signature does not verify */
    EHR_EPASSPHRASE,     /* wrong passphrase (or a key file tampered with) */
    EHR_EVERSION,        /* unknown format or protocol version */
    EHR_ENOTFOUND,       /* no such block, transaction, key, ... */
    EHR_EEXIST,          /* already present (a duplicate) */
    EHR_EFULL,           /* a bounded store or queue is full */
    EHR_ELINK,           /* a hash chain or height link is broken */
    EHR_EEXPIRED,        /* past its expiry */
    EHR_ECHAIN,          /* wrong chain id */
    EHR_ENOTLEADER,      /* this node cannot do that; ask the leader */
    EHR_ECLOSED,         /* the object was closed or the peer went away */
    EHR_EAGAIN,          /* try again later (queue full, back-pressure) */
    EHR_ETIMEDOUT,       /* a deadline passed */
    EHR_EPROTO,          /* a peer broke the protocol */
    EHR_EDENIED,         /* not permitted (not a member, no consent) */
    EHR_EDIVERGED,       /* this node's state differs from the cluster's */
    EHR_EREFUSED,        /* a rule's precondition does not hold (done already, ...) */
    EHR_ERR_LAST_        /* not an error: one past the last code */
};

/* "VERSION (commit HASH)": the release (CMake's project version) and the git
 * commit the binary was built from ("-dirty" with uncommitted changes). */
const char *ehr_version(void);

/* A short English description of ERR (ours or -errno). Never NULL. */
const char *ehr_strerror(int err);

/* A stable identifier for ERR, e.g. "EHR_ETOOBIG" or "ENOENT", for logs and --json. */
const char *ehr_errname(int err);

/*
 * Why a call failed, for a person (docs/DESIGN.md, "Errors"): a function
 * that can say more than its error code takes an optional last argument
 * `ehr_diag *diag` (NULL: no message wanted) and, when it fails, writes one
 * line there (no newline). It writes nothing when it succeeds.
 */
/* Room for a message that names a path or an address with the value and the
 * limit (the node's config messages were 512 bytes before this type). */
enum { EHR_DIAG_BYTES_MAX = 512 };
typedef struct ehr_diag {
    char msg[EHR_DIAG_BYTES_MAX];
} ehr_diag;

/* Format a message into DIAG (may be NULL; the message is cut to fit).
 * Returns ERR, so a caller writes `return ehr_diag_fail(diag, EHR_EINVAL,
 * "...", ...);`. */
int ehr_diag_fail(ehr_diag *diag, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Allocation. ehr_malloc and friends abort with a message on out-of-memory:
 * use them where the caller could not do better. ehr_try_malloc returns NULL
 * instead, for the few places that can really recover (and for tests that
 * inject allocation failures through ehr_alloc_fail_after).
 */
void *ehr_malloc(size_t size);
void *ehr_calloc(size_t count, size_t size);
void *ehr_realloc(void *ptr, size_t size);
char *ehr_strdup(const char *s);
void ehr_free(void *ptr);
void *ehr_try_malloc(size_t size);

/*
 * Test hooks for the allocator (cheap enough to stay compiled in).
 * ehr_alloc_fail_after(n): the (n+1)-th ehr_try_malloc from now fails; a
 * negative n switches injection off. ehr_alloc_largest_bytes() is the largest
 * single allocation made through the wrapper since ehr_alloc_stats_reset().
 */
void ehr_alloc_fail_after(long n);
size_t ehr_alloc_largest_bytes(void);
void ehr_alloc_stats_reset(void);

/*
 * Hex. ehr_hex_encode writes 2*len characters and a NUL to out (which must
 * hold 2*len+1). ehr_hex_decode parses exactly out_len bytes from a string of
 * exactly 2*out_len hex digits (either case); EHR_EINVAL otherwise.
 */
void ehr_hex_encode(char *out, const uint8_t *data, size_t len);
int ehr_hex_decode(uint8_t *out, size_t out_len, const char *hex);

/*
 * Logging: one line per event, `ts=... level=... msg="..." key=value ...`.
 * The message is a fixed string; variable parts go in the key=value tail,
 * formatted by the caller. Never log a secret.
 */
enum ehr_log_level { EHR_LOG_DEBUG, EHR_LOG_INFO, EHR_LOG_WARN, EHR_LOG_ERROR, EHR_LOG_OFF };

typedef void (*ehr_log_sink)(void *ctx, enum ehr_log_level level, const char *line);

void ehr_log_set_level(enum ehr_log_level level);
enum ehr_log_level ehr_log_get_level(void);
/* Parse "debug", "info", "warn", "error", "off". Returns 0 or EHR_EINVAL. */
int ehr_log_level_parse(const char *name, enum ehr_log_level *out);
/* Send lines to SINK instead of stderr (NULL restores stderr). For tests. */
void ehr_log_set_sink(ehr_log_sink sink, void *ctx);
void ehr_log(enum ehr_log_level level, const char *msg, const char *kv_fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * A line an outsider can provoke at will (a refused connection, a refused
 * call) goes through a limiter, so that a flood of such events costs at
 * most one line per interval, carrying how many there were.
 *
 * ehr_log_limit_hit counts one event at NOW_MS (any clock that does not go
 * back) and returns true when a line is due now: the first event, and the
 * first after an interval has passed since the last line; *COUNT is then
 * the events the line stands for (this one and those held back since the
 * last line) and the count starts again. Otherwise it returns false and
 * the event waits in the count. ehr_log_limit_flush returns true, with
 * *COUNT, when events are held back and their interval has passed (a
 * caller's timer calls it, so the last of a burst is not lost);
 * ehr_log_limit_due_ms says when that will be (0: nothing held back).
 * Caller-owned, zero-initialised; not thread-safe.
 */
#define EHR_LOG_LIMIT_INTERVAL_MS 10000u
struct ehr_log_limit {
    uint64_t interval_ms; /* 0: EHR_LOG_LIMIT_INTERVAL_MS */
    uint64_t next_ms;     /* no line before this */
    uint64_t held;        /* events counted and not yet in a line */
    bool started;         /* a line was logged (next_ms is set) */
};
bool ehr_log_limit_hit(struct ehr_log_limit *limit, uint64_t now_ms, uint64_t *count);
bool ehr_log_limit_flush(struct ehr_log_limit *limit, uint64_t now_ms, uint64_t *count);
uint64_t ehr_log_limit_due_ms(const struct ehr_log_limit *limit);

/*
 * Small whole files (file.c). ehr_file_write_atomic writes LEN bytes to PATH
 * so that after a crash PATH is either absent/old or complete: a temporary
 * file created with O_EXCL in the same directory, given exactly MODE (umask
 * notwithstanding), written, fsynced, renamed over PATH, then the directory
 * fsynced. Without OVERWRITE an
 * existing PATH is never replaced (EHR_EEXIST), checked atomically by the
 * rename. Returns 0, EHR_EEXIST or -errno; on error PATH is untouched.
 *
 * ehr_file_read reads the regular file PATH into BUF (capacity BUF_SIZE):
 * 0 with *LEN_OUT set, EHR_ETOOBIG if the file is longer than BUF_SIZE,
 * EHR_EINVAL if it is not a regular file, -errno. ehr_file_read_alloc does
 * the same into a new ehr_malloc'd buffer of at most MAX_BYTES that the
 * caller frees with ehr_free; the size is checked before allocating.
 */
int ehr_file_write_atomic(const char *path, const void *data, size_t len, unsigned mode,
                          bool overwrite);
/* fsync the directory DIR, so that a rename, link or unlink inside it is on
 * disk. Returns 0 or -errno. */
int ehr_dir_sync(const char *dir);
/* pwrite() all LEN bytes of DATA at OFFSET of FD, retrying short writes and
 * EINTR: 0 or -errno. */
int ehr_pwrite_all(int fd, const uint8_t *data, size_t len, uint64_t offset);
/* pread() exactly LEN bytes at OFFSET of FD into DATA, retrying short reads
 * and EINTR: 0, EHR_ETRUNCATED (the file ends first) or -errno. */
int ehr_pread_all(int fd, uint8_t *data, size_t len, uint64_t offset);
int ehr_file_read(const char *path, void *buf, size_t buf_size, size_t *len_out);
int ehr_file_read_alloc(const char *path, size_t max_bytes, uint8_t **data_out, size_t *len_out);

/* Safety invariant: stays on in release builds; prints and aborts. */
#define EHR_ASSERT(cond)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ehr_assert_fail(#cond, __FILE__, __LINE__, __func__);                                  \
    } while (0)

_Noreturn void ehr_assert_fail(const char *what, const char *file, int line, const char *func);

/* Abort with a message: for states a node must never continue from. */
_Noreturn void ehr_panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define EHR_ARRAY_COUNT(a) (sizeof(a) / sizeof((a)[0]))

#endif /* EHR_COMMON_H */
