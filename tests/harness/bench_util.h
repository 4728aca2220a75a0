/*
 * bench_util.h - what the single-process benchmark programs (bench_crypto,
 * bench_pre, bench_vm, bench_apply) share: reading a count argument and
 * pinning the process to one CPU so that a figure and its floor, measured
 * round by round, run on the same core.
 */
#ifndef EHR_TEST_BENCH_UTIL_H
#define EHR_TEST_BENCH_UTIL_H

/* S as a number in 1..MAX; otherwise "PROG: bad number ..." on stderr and
 * exit 2. */
long bench_parse_long(const char *prog, const char *s, long max);

/* Pin the process to the CPU it runs on now, and print "# pinned to cpu N"
 * (or "# not pinned to a cpu" if that fails; the figures then still stand,
 * with more noise). */
void bench_pin_to_current_cpu(void);

#endif
