/* bench_util.c - see bench_util.h. */
#include "bench_util.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

long bench_parse_long(const char *prog, const char *s, long max)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 1 || v > max) {
        fprintf(stderr, "%s: bad number '%s' (1..%ld)\n", prog, s, max);
        exit(2);
    }
    return v;
}

void bench_pin_to_current_cpu(void)
{
    int cpu = sched_getcpu();
    cpu_set_t set;
    CPU_ZERO(&set);
    if (cpu >= 0)
        CPU_SET(cpu, &set);
    if (cpu < 0 || sched_setaffinity(0, sizeof set, &set) != 0)
        printf("# not pinned to a cpu\n");
    else
        printf("# pinned to cpu %d\n", cpu);
}
