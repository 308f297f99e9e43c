/* membw: host memory read bandwidth for scripts/bench-functional: threads stream-read their share of a
 * 1 GiB buffer (far beyond any cache), summing 64-bit words; the best of 5 passes, in GB/s (1e9 bytes).
 *   cc -O2 -pthread membw.c -o membw && ./membw THREADS */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BYTES ((size_t)1 << 30)

typedef struct { const uint64_t *p; size_t n; uint64_t sum; } share;

static void *reader(void *arg)
{
    share *s = arg;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t i = 0; i + 4 <= s->n; i += 4) { a += s->p[i]; b += s->p[i + 1]; c += s->p[i + 2]; d += s->p[i + 3]; }
    s->sum = a + b + c + d;
    return NULL;
}

int main(int argc, char **argv)
{
    int t = argc > 1 ? atoi(argv[1]) : 1;
    if (t < 1 || t > 64) { fprintf(stderr, "membw: threads 1..64, got %s\n", argv[1]); return 2; }
    uint64_t *buf = malloc(BYTES);
    if (!buf) { fprintf(stderr, "membw: out of memory for 1 GiB\n"); return 1; }
    memset(buf, 1, BYTES);
    size_t words = BYTES / 8;
    double best = 0;
    uint64_t check = 0;
    for (int pass = 0; pass < 5; pass++) {
        share s[64];
        pthread_t th[64];
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (int k = 0; k < t; k++) {
            s[k] = (share){buf + words * (size_t)k / (size_t)t, words / (size_t)t, 0};
            if (k) pthread_create(&th[k], NULL, reader, &s[k]);
        }
        reader(&s[0]);
        for (int k = 1; k < t; k++) pthread_join(th[k], NULL);
        clock_gettime(CLOCK_MONOTONIC, &b);
        double sec = (double)(b.tv_sec - a.tv_sec) + 1e-9 * (double)(b.tv_nsec - a.tv_nsec);
        for (int k = 0; k < t; k++) check += s[k].sum;
        if (BYTES / sec / 1e9 > best) best = BYTES / sec / 1e9;
    }
    printf("%.2f\n", best);
    return check == 0; /* the sums are used: the reads cannot be optimized away */
}
