/*
 * raft_wire_seeds.c - writes the seed corpus of fuzz_raft_wire: one encoded
 * RaftMessage of every type with every field it may carry (entries of each
 * type, a snapshot chunk), and two in their PeerMessage envelope. Not a
 * fuzzer: run it once when the format changes and commit its output:
 *   raft_wire_seeds tests/fuzz/corpus/fuzz_raft_wire
 * The corpus also keeps, by hand, inputs that once crashed the target, each
 * named regress-* (this program leaves them alone).
 */
#include <stdio.h>
#include <string.h>

#include "raft_wire.h"

static int write_seed(const char *dir, const char *name, const uint8_t *buf, size_t size)
{
    char path[512];
    int n = snprintf(path, sizeof path, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= sizeof path)
        return -1;
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return -1;
    size_t put = fwrite(buf, 1, size, f);
    return fclose(f) == 0 && put == size ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    static const char *names[RAFT_MSG_TYPE_LAST_] = {
        NULL,        "append",    "append_resp",    "prevote",  "prevote_resp",  "vote",
        "vote_resp", "heartbeat", "heartbeat_resp", "snapshot", "snapshot_resp", "timeout_now"};
    const struct raft_config config = {
        .voter_count = 3, .voters = {1, 2, 3}, .learner_count = 1, .learners = {4}};
    uint8_t config_bytes[RAFT_CONFIG_ENCODED_BYTES_MAX];
    int config_size = raft_config_encode(&config, config_bytes);
    const uint8_t block[] = "a block proposal";
    const uint8_t chunk[] = "snapshot bytes, one chunk of them";
    const struct raft_entry entries[] = {
        {.term = 4, .index = 11, .type = RAFT_ENTRY_EMPTY},
        {.term = 5, .index = 12, .type = RAFT_ENTRY_NORMAL, .size = sizeof block, .data = block},
        {.term = 5,
         .index = 13,
         .type = RAFT_ENTRY_CONFIG,
         .size = (uint32_t)config_size,
         .data = config_bytes}};
    const struct raft_snapshot_meta meta = {.index = 10, .term = 4, .config = config};
    static uint8_t buf[1 << 12];
    for (int t = RAFT_MSG_APPEND; t < RAFT_MSG_TYPE_LAST_; t++) {
        struct raft_message m = {.type = (enum raft_message_type)t,
                                 .from = 1,
                                 .to = 2,
                                 .term = 5,
                                 .index = 10,
                                 .log_term = 4,
                                 .commit = 9,
                                 .hint_index = t == RAFT_MSG_APPEND_RESP ? 8 : 0,
                                 .hint_term = t == RAFT_MSG_APPEND_RESP ? 3 : 0,
                                 .context = 42,
                                 .reject = t == RAFT_MSG_APPEND_RESP,
                                 .transfer = t == RAFT_MSG_VOTE};
        if (t == RAFT_MSG_APPEND) {
            m.entries = entries;
            m.entry_count = sizeof entries / sizeof entries[0];
        }
        if (t == RAFT_MSG_SNAPSHOT) {
            m.snapshot = &meta;
            m.offset = 64;
            m.done = true;
            m.size = sizeof chunk;
            m.data = chunk;
        }
        if (t == RAFT_MSG_SNAPSHOT_RESP)
            m.offset = 64 + sizeof chunk;
        size_t size = 0;
        int err = node_raft_wire_encode(&m, buf, sizeof buf, &size);
        if (err == 0)
            err = write_seed(argv[1], names[t], buf, size);
        if (err == 0 && (t == RAFT_MSG_APPEND || t == RAFT_MSG_HEARTBEAT)) {
            char name[64];
            snprintf(name, sizeof name, "peer_%s", names[t]);
            err = node_raft_wire_peer_encode(&m, buf, sizeof buf, &size);
            if (err == 0)
                err = write_seed(argv[1], name, buf, size);
        }
        if (err != 0) {
            fprintf(stderr, "%s: %s: %s\n", argv[0], names[t], ehr_errname(err));
            return 1;
        }
    }
    return 0;
}
