/*
 * raft_test_util.h - helpers shared by the consensus tests, the simulator and
 * the benchmark: deep copies of messages (a ready batch's messages live only
 * until raft_ready_advance, a network holds them longer). Test code only.
 */
#ifndef EHR_RAFT_TEST_UTIL_H
#define EHR_RAFT_TEST_UTIL_H

#include "raft.h"

/* A deep copy of m in one allocation (entries, their data, snapshot meta and
 * chunk included). Free with rt_msg_free. Never NULL. */
struct raft_message *rt_msg_clone(const struct raft_message *m);
void rt_msg_free(struct raft_message *m);

/* 64-bit FNV-1a over data, continuing from h (start with RT_HASH_INIT). */
#define RT_HASH_INIT 0xcbf29ce484222325ULL
uint64_t rt_hash(uint64_t h, const void *data, size_t size);

/* Hash of an entry's identity and content: index, term, type, data. */
uint64_t rt_entry_hash(const struct raft_entry *e);

#endif
