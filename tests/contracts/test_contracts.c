/*
 * Tests of contracts/'s block write set over an in-memory world state: a
 * sorted array standing for the committed state behind struct
 * contracts_state, so contracts/ is exercised without the ledger or LMDB.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contracts.h"

/* ---- an in-memory committed state ---- */

enum { MEM_KEYS_MAX = 64 };

struct mem_state {
    size_t count;
    char keys[MEM_KEYS_MAX][32]; /* sorted, NUL-terminated text keys */
    char values[MEM_KEYS_MAX][32];
    unsigned gets, scans; /* calls seen */
};

static int mem_get(void *ctx, const uint8_t *key, size_t key_len, uint8_t *value, size_t *len)
{
    struct mem_state *m = ctx;
    m->gets++;
    for (size_t i = 0; i < m->count; i++)
        if (strlen(m->keys[i]) == key_len && memcmp(m->keys[i], key, key_len) == 0) {
            *len = strlen(m->values[i]);
            memcpy(value, m->values[i], *len);
            return 0;
        }
    return EHR_ENOTFOUND;
}

static int mem_scan(void *ctx, const uint8_t *prefix, size_t prefix_len, contracts_scan_fn fn,
                    void *fn_ctx)
{
    struct mem_state *m = ctx;
    m->scans++;
    for (size_t i = 0; i < m->count; i++) {
        if (strlen(m->keys[i]) < prefix_len || memcmp(m->keys[i], prefix, prefix_len) != 0)
            continue;
        int rc = fn(fn_ctx, (const uint8_t *)m->keys[i], strlen(m->keys[i]),
                    (const uint8_t *)m->values[i], strlen(m->values[i]));
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* KEYS[i]=VALUES[i], given in ascending key order. */
static struct contracts_state mem_view(struct mem_state *m, const char *const *kv, size_t count)
{
    memset(m, 0, sizeof *m);
    for (size_t i = 0; i < count; i++) {
        snprintf(m->keys[i], sizeof m->keys[i], "%s", kv[2 * i]);
        snprintf(m->values[i], sizeof m->values[i], "%s", kv[2 * i + 1]);
        if (i > 0)
            assert_true(strcmp(m->keys[i - 1], m->keys[i]) < 0);
    }
    m->count = count;
    return (struct contracts_state){.ctx = m, .get = mem_get, .scan = mem_scan};
}

static const uint8_t *k(const char *text)
{
    return (const uint8_t *)text;
}

static int put(contracts_block *b, const char *key, const char *value)
{
    return contracts_block_put(b, k(key), strlen(key), k(value), strlen(value));
}

static int del(contracts_block *b, const char *key)
{
    return contracts_block_delete(b, k(key), strlen(key));
}

/* KEY's value as the block sees it, or "-" when absent. */
static const char *get(contracts_block *b, const char *key)
{
    static uint8_t value[EHR_STATE_VALUE_BYTES_MAX + 1];
    size_t len = 0;
    int rc = contracts_block_get(b, k(key), strlen(key), value, &len);
    if (rc == EHR_ENOTFOUND)
        return "-";
    assert_int_equal(rc, 0);
    value[len] = '\0';
    return (const char *)value;
}

/* The scan of PREFIX as "k=v k=v ..." text. */
struct collect {
    char text[512];
    size_t len;
    size_t stop_after; /* 0: never stop */
    size_t seen;
};

static int collect_fn(void *ctx, const uint8_t *key, size_t key_len, const uint8_t *value,
                      size_t value_len)
{
    struct collect *c = ctx;
    c->len += (size_t)snprintf(c->text + c->len, sizeof c->text - c->len, "%s%.*s=%.*s",
                               c->len ? " " : "", (int)key_len, (const char *)key, (int)value_len,
                               (const char *)value);
    c->seen++;
    return c->stop_after != 0 && c->seen == c->stop_after ? 7 : 0;
}

static const char *scan(contracts_block *b, const char *prefix)
{
    static struct collect c;
    memset(&c, 0, sizeof c);
    assert_int_equal(contracts_block_scan(b, k(prefix), strlen(prefix), collect_fn, &c), 0);
    return c.text;
}

/* The block's writes as "k=v k! ..." text (k! for a delete). */
static const char *writes(contracts_block *b)
{
    static char text[1024];
    const ledger_state_write *w;
    size_t n = contracts_block_writes(b, &w);
    size_t len = 0;
    text[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (w[i].remove)
            len += (size_t)snprintf(text + len, sizeof text - len, "%s%.*s!", len ? " " : "",
                                    (int)w[i].key_len, (const char *)w[i].key);
        else
            len += (size_t)snprintf(text + len, sizeof text - len, "%s%.*s=%.*s", len ? " " : "",
                                    (int)w[i].key_len, (const char *)w[i].key, (int)w[i].value_len,
                                    (const char *)w[i].value);
    }
    return text;
}

static contracts_block *open_block(const struct contracts_state *view)
{
    struct contracts_block_ctx ctx = {.height = 7, .time_ms = 1700000000000ull};
    memset(ctx.proposer, 0xab, sizeof ctx.proposer);
    contracts_block *b = NULL;
    assert_int_equal(contracts_block_begin(view, &ctx, &b), 0);
    assert_non_null(b);
    assert_int_equal(contracts_block_context(b)->height, 7);
    return b;
}

/* ---- tests ---- */

static void test_reads_see_earlier_transactions_then_the_committed_state(void **state)
{
    struct mem_state m;
    static const char *const kv[] = {"a1", "one", "a3", "three", "b1", "bee"};
    struct contracts_state view = mem_view(&m, kv, 3);
    contracts_block *b = open_block(&view);

    contracts_block_tx_begin(b);
    assert_string_equal(get(b, "a1"), "one"); /* the committed state */
    assert_int_equal(put(b, "a1", "uno"), 0);
    assert_string_equal(get(b, "a1"), "uno"); /* its own write */
    assert_int_equal(del(b, "a3"), 0);
    assert_string_equal(get(b, "a3"), "-"); /* deleted: hidden */
    contracts_block_tx_commit(b);

    contracts_block_tx_begin(b);
    assert_string_equal(get(b, "a1"), "uno"); /* an earlier transaction's */
    assert_string_equal(get(b, "a3"), "-");
    assert_string_equal(get(b, "b1"), "bee");
    assert_string_equal(get(b, "zz"), "-");
    assert_int_equal(put(b, "a3", "back"), 0); /* re-created after a delete */
    contracts_block_tx_commit(b);

    assert_string_equal(writes(b), "a1=uno a3=back");
    contracts_block_end(b);
}

static void test_abort_restores_every_kind_of_earlier_write(void **state)
{
    struct mem_state m;
    static const char *const kv[] = {"c", "committed"};
    struct contracts_state view = mem_view(&m, kv, 1);
    contracts_block *b = open_block(&view);
    contracts_block_tx_begin(b);
    assert_int_equal(put(b, "p", "first"), 0);
    assert_int_equal(del(b, "q"), 0);
    contracts_block_tx_commit(b);
    const char *before = "p=first q!";
    assert_string_equal(writes(b), before);

    /* A refused transaction: overwrite, delete, re-put, create, twice the
     * same key: all undone. */
    contracts_block_tx_begin(b);
    assert_int_equal(put(b, "p", "second"), 0);
    assert_int_equal(put(b, "p", "third"), 0);
    assert_int_equal(put(b, "q", "revived"), 0);
    assert_int_equal(del(b, "c"), 0);
    assert_int_equal(put(b, "new", "x"), 0);
    assert_string_equal(get(b, "p"), "third");
    contracts_block_tx_abort(b);
    assert_string_equal(writes(b), before);
    contracts_block_tx_begin(b);
    assert_string_equal(get(b, "p"), "first");
    assert_string_equal(get(b, "q"), "-");
    assert_string_equal(get(b, "c"), "committed");
    assert_string_equal(get(b, "new"), "-");
    contracts_block_tx_commit(b);
    /* Ending with a transaction in progress aborts it. */
    contracts_block_tx_begin(b);
    assert_int_equal(put(b, "left", "open"), 0);
    contracts_block_end(b);
}

static void test_scans_merge_pending_writes_over_the_committed_state(void **state)
{
    struct mem_state m;
    static const char *const kv[] = {"a1", "one", "a3", "three", "a5", "five", "b1", "bee"};
    struct contracts_state view = mem_view(&m, kv, 4);
    contracts_block *b = open_block(&view);
    contracts_block_tx_begin(b);
    assert_int_equal(put(b, "a0", "zero"), 0); /* before every committed key */
    assert_int_equal(put(b, "a1", "uno"), 0);  /* over a committed key */
    assert_int_equal(put(b, "a2", "two"), 0);  /* between two */
    assert_int_equal(del(b, "a3"), 0);         /* hiding one */
    assert_int_equal(put(b, "a9", "nine"), 0); /* after every committed key */
    assert_int_equal(put(b, "c1", "sea"), 0);  /* outside the prefix */
    assert_string_equal(scan(b, "a"), "a0=zero a1=uno a2=two a5=five a9=nine");
    assert_string_equal(scan(b, "b"), "b1=bee");
    assert_string_equal(scan(b, "c"), "c1=sea");
    assert_string_equal(scan(b, "d"), "");
    assert_string_equal(scan(b, ""), "a0=zero a1=uno a2=two a5=five a9=nine b1=bee c1=sea");
    /* A scan that stops early says so with the callback's value. */
    struct collect c = {.stop_after = 2};
    assert_int_equal(contracts_block_scan(b, k("a"), 1, collect_fn, &c), 7);
    assert_string_equal(c.text, "a0=zero a1=uno");
    contracts_block_tx_commit(b);
    contracts_block_end(b);
}

static void test_writes_are_sorted_one_per_key_whatever_the_order(void **state)
{
    struct mem_state m;
    struct contracts_state view = mem_view(&m, NULL, 0);
    static const char *const keys[] = {"m", "b", "zz", "a", "b", "m"};
    /* The same writes in two orders give the same block writes. */
    char first[1024];
    for (int round = 0; round < 2; round++) {
        contracts_block *b = open_block(&view);
        contracts_block_tx_begin(b);
        for (size_t i = 0; i < EHR_ARRAY_COUNT(keys); i++) {
            size_t at = round == 0 ? i : EHR_ARRAY_COUNT(keys) - 1 - i;
            char value[8];
            snprintf(value, sizeof value, "%s", keys[at][0] == 'b' ? "B" : keys[at]);
            assert_int_equal(put(b, keys[at], value), 0);
        }
        contracts_block_tx_commit(b);
        if (round == 0)
            snprintf(first, sizeof first, "%s", writes(b));
        else
            assert_string_equal(writes(b), first);
        contracts_block_end(b);
    }
    assert_string_equal(first, "a=a b=B m=m zz=zz");
}

static void test_bounds_at_their_edges(void **state)
{
    struct mem_state m;
    struct contracts_state view = mem_view(&m, NULL, 0);
    contracts_block *b = open_block(&view);
    contracts_block_tx_begin(b);
    static uint8_t big[EHR_STATE_VALUE_BYTES_MAX + 1];
    static uint8_t key[EHR_STATE_KEY_BYTES_MAX + 1];
    memset(key, 'k', sizeof key);
    /* Keys: 0 and one over refused; the longest taken. */
    assert_int_equal(contracts_block_put(b, key, 0, big, 1), EHR_EINVAL);
    assert_int_equal(contracts_block_put(b, key, EHR_STATE_KEY_BYTES_MAX + 1, big, 1), EHR_EINVAL);
    assert_int_equal(contracts_block_put(b, key, EHR_STATE_KEY_BYTES_MAX, big, 1), 0);
    /* Values: one over refused; the largest and the empty taken. */
    assert_int_equal(contracts_block_put(b, k("v"), 1, big, EHR_STATE_VALUE_BYTES_MAX + 1),
                     EHR_EINVAL);
    assert_int_equal(contracts_block_put(b, k("v"), 1, big, EHR_STATE_VALUE_BYTES_MAX), 0);
    assert_int_equal(contracts_block_put(b, k("e"), 1, NULL, 0), 0);
    assert_string_equal(get(b, "e"), "");
    contracts_block_tx_commit(b);
    contracts_block_end(b);

    /* The block's byte bound: fill it to the byte with full values and one
     * smaller write, then one more byte is refused and changes nothing. */
    b = open_block(&view);
    contracts_block_tx_begin(b);
    size_t each = 4 + EHR_STATE_VALUE_BYTES_MAX, full = CONTRACTS_BLOCK_BYTES_MAX / each;
    size_t rest = CONTRACTS_BLOCK_BYTES_MAX - full * each;
    assert_true(rest > 4);
    char name[24]; /* 4 digits used; room for any size_t, as -Wformat-truncation asks */
    for (size_t i = 0; i < full; i++) {
        snprintf(name, sizeof name, "%04zu", i);
        assert_int_equal(contracts_block_put(b, k(name), 4, big, EHR_STATE_VALUE_BYTES_MAX), 0);
    }
    assert_int_equal(contracts_block_put(b, k("last"), 4, big, rest - 4 + 1), EHR_ETOOBIG);
    assert_int_equal(contracts_block_put(b, k("last"), 4, big, rest - 4), 0);
    assert_int_equal(contracts_block_put(b, k("more"), 4, big, 0), EHR_ETOOBIG);
    /* Rewriting a key with a value no longer is within the bound. */
    assert_int_equal(contracts_block_put(b, k("0000"), 4, big, 10), 0);
    contracts_block_tx_commit(b);
    const ledger_state_write *w;
    assert_int_equal(contracts_block_writes(b, &w), full + 1);
    contracts_block_end(b);

    /* The block's key bound. */
    b = open_block(&view);
    contracts_block_tx_begin(b);
    for (uint32_t i = 0; i < CONTRACTS_BLOCK_KEYS_MAX; i++) {
        uint8_t kb[4] = {(uint8_t)(i >> 24), (uint8_t)(i >> 16), (uint8_t)(i >> 8), (uint8_t)i};
        assert_int_equal(contracts_block_put(b, kb, 4, NULL, 0), 0);
    }
    assert_int_equal(contracts_block_put(b, k("over"), 4, NULL, 0), EHR_ETOOBIG);
    assert_int_equal(contracts_block_delete(b, k("over"), 4), EHR_ETOOBIG);
    uint8_t again[4] = {0, 0, 0, 5};
    assert_int_equal(contracts_block_delete(b, again, 4), 0); /* an existing key: no new one */
    contracts_block_tx_commit(b);
    assert_int_equal(contracts_block_writes(b, &w), CONTRACTS_BLOCK_KEYS_MAX);
    contracts_block_end(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reads_see_earlier_transactions_then_the_committed_state),
        cmocka_unit_test(test_abort_restores_every_kind_of_earlier_write),
        cmocka_unit_test(test_scans_merge_pending_writes_over_the_committed_state),
        cmocka_unit_test(test_writes_are_sorted_one_per_key_whatever_the_order),
        cmocka_unit_test(test_bounds_at_their_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
