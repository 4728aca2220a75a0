/*
 * state_view.c - the world state as contracts/ sees it (struct
 * contracts_state) over the node's ledger: its tables and overlay as of the
 * tip. The loop is the ledger's only writer, so the state cannot change
 * while a block or a submission is applied through the view. And the
 * questions the node asks of that state about one record before it serves
 * or keeps anything of it (node__state_record_erased).
 */
#include <string.h>

#include "node_internal.h"

static int view_get(void *ctx, const uint8_t *key, size_t key_len, uint8_t *value, size_t *len)
{
    struct node__state_view *v = ctx;
    uint8_t *copy = NULL;
    size_t n = 0;
    int rc = ledger_state_get(v->ledger, key, key_len, &copy, &n, &v->diag);
    if (rc != 0)
        return rc;
    EHR_ASSERT(n <= EHR_STATE_VALUE_BYTES_MAX); /* the ledger's own bound */
    if (n > 0)
        memcpy(value, copy, n);
    *len = n;
    ehr_free(copy);
    return 0;
}

/* One scan of the view, continued over as many ledger scans as it takes. */
struct scan {
    contracts_scan_fn fn;
    void *fn_ctx;
    int stopped; /* FN's non-zero value */
    uint8_t last[EHR_STATE_KEY_BYTES_MAX];
    size_t last_len;
};

static int scan_one(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                    size_t value_len)
{
    struct scan *s = ctx;
    EHR_ASSERT(key_len <= sizeof s->last);
    memcpy(s->last, key, key_len);
    s->last_len = key_len;
    int rc = s->fn(s->fn_ctx, key, key_len, value, value_len);
    if (rc == 0)
        return 0;
    s->stopped = rc;
    return 1;
}

static int view_scan(void *ctx, const uint8_t *prefix, size_t prefix_len, contracts_scan_fn fn,
                     void *fn_ctx)
{
    struct node__state_view *v = ctx;
    struct scan s = {.fn = fn, .fn_ctx = fn_ctx};
    for (;;) {
        long seen = ledger_state_scan(v->ledger, prefix, prefix_len, s.last_len ? s.last : NULL,
                                      s.last_len, LEDGER_SCAN_COUNT_MAX, scan_one, &s, &v->diag);
        if (seen < 0)
            return (int)seen;
        if (s.stopped != 0)
            return s.stopped;
        if ((size_t)seen < LEDGER_SCAN_COUNT_MAX)
            return 0;
    }
}

struct contracts_state node__state_view(struct node__state_view *v, ledger *l)
{
    v->ledger = l;
    v->diag.msg[0] = '\0';
    return (struct contracts_state){.ctx = v, .get = view_get, .scan = view_scan};
}

int node__state_record_erased(ledger *l, const uint8_t record_id[EHR_HASH_BYTES], bool *erased)
{
    uint8_t k[CONTRACTS_KEY_BYTES_MAX], *v = NULL;
    size_t klen = contracts_key(k, CONTRACTS_PREFIX_ERASED_RECORDS, record_id, NULL, NULL);
    size_t vlen = 0;
    int rc = ledger_state_get(l, k, klen, &v, &vlen, NULL);
    ehr_free(v);
    *erased = rc == 0;
    return rc == EHR_ENOTFOUND ? 0 : rc;
}
