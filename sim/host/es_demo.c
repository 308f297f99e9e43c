#define _GNU_SOURCE /* O_TMPFILE */
/* es_demo: the demo dataset of card transactions (see es_dataset.h).
 * 500 customers, each with a home city and three usual merchant categories
 * drawn from everyday ones. 97% of transactions are in a usual category at
 * a typical amount, mostly in the home city; 3% are anomalies: a category
 * the customer never uses (jewelry, gambling, crypto exchange, money
 * transfer, luxury electronics), larger amounts, often another city.
 * Merchant names include commas, quotes and accents, so the CSV needs
 * RFC 4180 quoting. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include "es_dataset.h"
#include "es_fs.h"

static uint64_t next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
static int pick(uint64_t *s, int n) { return (int)(next(s) % (uint64_t)n); }
static double unif(uint64_t *s) { return ((double)(next(s) >> 11) + 0.5) / 9007199254740992.0; }

static const char *cities[] = {"Austin", "Boston", "Chicago", "Denver", "Miami", "Portland", "Seattle", "Phoenix"};
static const char *foreign[] = {"Lagos", "Bucharest", "Macau", "Minsk", "Panama City"};
#define N_EVERYDAY 8
static const char *cats[] = {"grocery", "fuel", "restaurant", "pharmacy", "clothing", "utilities",
                             "entertainment", "home_improvement",
                             /* unusual */ "jewelry", "gambling", "crypto_exchange", "money_transfer",
                             "luxury_electronics"};
#define N_CATS (int)(sizeof cats / sizeof cats[0])
static const char *merchants[N_CATS][3] = {
    {"FreshMart", "Green Basket Grocers", "Joe's Market, Inc."},
    {"Shell #4471", "QuickFuel", "Bob's \"Fast\" Gas"},
    {"Caf\xc3\xa9 Lumi\xc3\xa8re", "Taco Palace", "The Noodle Bar, Downtown"},
    {"CVS Pharmacy", "Walgreens #210", "Corner Drug"},
    {"Gap", "Thread & Needle", "Zara, Mall Level 2"},
    {"City Water", "PowerGrid Electric", "Comcast"},
    {"AMC Theatres", "Spotify", "Bowl-a-Rama"},
    {"Home Depot", "Lowe's", "Ace Hardware"},
    {"Golden Carat Jewelers", "Tiffany & Co.", "Diamond \"Direct\""},
    {"Lucky Star Casino", "BetOnline", "Royal Flush Poker"},
    {"CoinFlip ATM", "Binance", "Kraken"},
    {"Western Union", "MoneyGram", "Remitly"},
    {"Apple Store Fifth Ave", "B&H Photo", "Best Buy, Flagship"}};
static const double typical[N_CATS] = {60, 45, 35, 25, 70, 110, 30, 90, 900, 400, 1200, 800, 1500};

static void csv_field(FILE *f, const char *s, int last)
{
    if (strpbrk(s, ",\"\n\r")) {
        fputc('"', f);
        for (; *s; s++) {
            if (*s == '"') fputc('"', f);
            fputc(*s, f);
        }
        fputc('"', f);
    } else {
        fputs(s, f);
    }
    fputc(last ? '\n' : ',', f);
}

/* The longest row the generator writes, bytes: its fields' longest values (id of up to 20
 * digits, the timestamp, the longest city, category list, merchant and amount), quoted. */
#define DEMO_ROW_MAX 320

/* Room for n rows in folder dir: a large --records fails at once instead of filling the disk. */
static int check_room(const char *dir, const char *path, int64_t n, es_err *e)
{
    struct statvfs fs;
    if (statvfs(dir, &fs) == 0) {
        double need = (double)n * DEMO_ROW_MAX, have = (double)fs.f_bavail * (double)fs.f_frsize;
        if (need > have)
            return es_fail(e, "%s: %lld records need up to %.3g GB; %s has %.3g GB free", path, (long long)n, need / 1e9,
                           dir, have / 1e9);
    }
    return 0;
}

/* The header and n rows into f (left open); 0, or -1 when a write failed (errno, ferror). */
static int write_rows(FILE *f, int64_t n, uint64_t seed)
{
    fputs("txn_id,timestamp,customer_id,customer_home_city,customer_usual_categories,merchant,"
          "merchant_category,amount_usd,city\n", f);
    uint64_t s = seed;
    enum { N_CUST = 500 };
    int home[N_CUST], usual[N_CUST][3];
    for (int c = 0; c < N_CUST; c++) {
        home[c] = pick(&s, 8);
        usual[c][0] = pick(&s, N_EVERYDAY);
        do usual[c][1] = pick(&s, N_EVERYDAY); while (usual[c][1] == usual[c][0]);
        do usual[c][2] = pick(&s, N_EVERYDAY); while (usual[c][2] == usual[c][0] || usual[c][2] == usual[c][1]);
    }
    for (int64_t i = 0; i < n; i++) {
        int c = pick(&s, N_CUST), anomaly = unif(&s) < 0.03;
        int cat = anomaly ? N_EVERYDAY + pick(&s, N_CATS - N_EVERYDAY) : usual[c][pick(&s, 3)];
        double amount = typical[cat] * exp(0.6 * (unif(&s) + unif(&s) + unif(&s) - 1.5));
        const char *city = cities[home[c]];
        if (anomaly ? unif(&s) < 0.5 : unif(&s) < 0.08)
            city = anomaly ? foreign[pick(&s, 5)] : cities[pick(&s, 8)];
        int64_t t = 1767225600 + (int64_t)(unif(&s) * 30 * 86400); /* 2026-01-01 + 30 days */
        int64_t day = (t - 1767225600) / 86400, sec = t % 86400;     /* days since 2026-01-01 */
        char id[32], ts[96], cust[16], usual_s[96], amt[32];
        snprintf(id, sizeof id, "T%06lld", (long long)(i + 1));
        snprintf(ts, sizeof ts, "2026-01-%02lldT%02lld:%02lld:%02lldZ", (long long)(day + 1), (long long)(sec / 3600),
                 (long long)(sec / 60 % 60), (long long)(sec % 60));
        snprintf(cust, sizeof cust, "C%04d", c);
        snprintf(usual_s, sizeof usual_s, "%s; %s; %s", cats[usual[c][0]], cats[usual[c][1]], cats[usual[c][2]]);
        snprintf(amt, sizeof amt, "%.2f", amount);
        csv_field(f, id, 0);
        csv_field(f, ts, 0);
        csv_field(f, cust, 0);
        csv_field(f, cities[home[c]], 0);
        csv_field(f, usual_s, 0);
        csv_field(f, merchants[cat][pick(&s, 3)], 0);
        csv_field(f, cats[cat], 0);
        csv_field(f, amt, 0);
        csv_field(f, city, 1);
        if ((i & 4095) == 4095 && ferror(f)) break; /* the disk filled after all: stop */
    }
    return ferror(f) ? -1 : 0;
}

int es_demo_write(const char *path, int64_t n, uint64_t seed, es_err *e)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *(slash == dir ? slash + 1 : slash) = 0;
    else snprintf(dir, sizeof dir, ".");
    if (check_room(dir, path, n, e)) return -1;
    if (es_check_output(path, "the dataset", e)) return -1;
    es_atomic out;
    if (es_atomic_open(&out, path, "the dataset", e)) return -1;
    write_rows(out.f, n, seed); /* a failed write leaves the stream in error: the commit reports it */
    return es_atomic_commit(&out, e);
}

int es_demo_open_unlinked(const char *dir, int64_t n, uint64_t seed, int *fd_out, es_err *e)
{
    *fd_out = -1;
    if (check_room(dir, dir, n, e)) return -1;
    /* O_TMPFILE: a file that never has a name; else a named one, removed at once */
    int fd = open(dir, O_TMPFILE | O_RDWR, 0600);
    if (fd < 0) {
        char name[1100];
        if (snprintf(name, sizeof name, "%s/etchsim-demo-XXXXXX", dir) >= (int)sizeof name)
            return es_fail(e, "%s: folder path too long for the demo dataset", dir);
        sigset_t stop, old; /* no signal between making the name and removing it */
        sigemptyset(&stop);
        sigaddset(&stop, SIGINT);
        sigaddset(&stop, SIGTERM);
        sigaddset(&stop, SIGHUP);
        sigprocmask(SIG_BLOCK, &stop, &old);
        fd = mkstemp(name);
        if (fd >= 0) unlink(name);
        sigprocmask(SIG_SETMASK, &old, NULL);
        if (fd < 0) return es_fail(e, "%s: cannot create the demo dataset there: %s", dir, strerror(errno));
    }
    int fd2 = dup(fd);
    FILE *f = fd2 >= 0 ? fdopen(fd2, "wb") : NULL;
    if (!f) {
        int err = errno;
        if (fd2 >= 0) close(fd2);
        close(fd);
        return es_fail(e, "%s: cannot write the demo dataset: %s", dir, strerror(err));
    }
    int bad = write_rows(f, n, seed);
    if (fclose(f)) bad = -1;
    if (bad || lseek(fd, 0, SEEK_SET) != 0) {
        int err = errno;
        close(fd);
        return es_fail(e, "%s: cannot write the demo dataset: %s", dir, strerror(err));
    }
    *fd_out = fd;
    return 0;
}
