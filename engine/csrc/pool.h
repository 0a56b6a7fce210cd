/* The worker pool of decode.c, for the other kernels in this folder. */
#pragma once
#include <stdint.h>

/* Run fn(arg, 0) .. fn(arg, n - 1) on the pool of decode.c (the caller takes part); returns when all are done. */
void jd_parallel(void (*fn)(const void *arg, int64_t unit), const void *arg, int64_t n);

/* Threads of that pool, the caller included (1 before it starts). */
int jd_pool_threads(void);
