
/*
 * Copyright (C) ngx_vetting_module authors
 */


#include "vetting_limit.h"


#define VETTING_MILLION  1000000


static void vetting_bucket_refill(const vetting_bucket_t *b, int64_t now,
    uint64_t rate, uint64_t cap, int64_t *last, uint64_t *excess);
static void vetting_bucket_state(int64_t now, uint64_t rate, uint64_t cap,
    uint64_t excess, vetting_bucket_state_t *st);
static int64_t vetting_bucket_wait(int64_t now, uint64_t rate,
    uint64_t need);
static void vetting_limit_clamp(uint64_t *rate, uint64_t *burst);
static void vetting_window_roll(const vetting_window_t *w, int64_t now,
    int64_t window, vetting_window_t *out, int64_t *elapsed);
static uint64_t vetting_window_estimate(const vetting_window_t *w,
    int64_t elapsed, int64_t window);
static uint64_t vetting_muldiv(uint64_t a, uint64_t b, uint64_t c);
static int64_t vetting_floor_div(int64_t a, int64_t b, int64_t *rem);


int
vetting_bucket_take(vetting_bucket_t *b, int64_t now, uint64_t rate,
    uint64_t burst, uint64_t n, vetting_bucket_state_t *st)
{
    int       rc;
    int64_t   last;
    uint64_t  cap, excess, add;

    vetting_limit_clamp(&rate, &burst);

    cap = burst * VETTING_MILLION;

    vetting_bucket_refill(b, now, rate, cap, &last, &excess);

    rc = VETTING_DECLINED;

    if (n <= burst) {
        add = n * VETTING_MILLION;

        if (add <= cap - excess) {
            excess += add;
            rc = VETTING_OK;
        }
    }

    b->last = last;
    b->excess = (int64_t) excess;

    vetting_bucket_state(last, rate, cap, excess, st);

    return rc;
}


void
vetting_bucket_peek(const vetting_bucket_t *b, int64_t now, uint64_t rate,
    uint64_t burst, vetting_bucket_state_t *st)
{
    int64_t   last;
    uint64_t  cap, excess;

    vetting_limit_clamp(&rate, &burst);

    cap = burst * VETTING_MILLION;

    vetting_bucket_refill(b, now, rate, cap, &last, &excess);
    vetting_bucket_state(last, rate, cap, excess, st);
}


/*
 * The drain between last and now is floor(rate * now / 1000) minus
 * floor(rate * last / 1000): the rounding is anchored to the epoch, so
 * frequent updates lose nothing, even at a few requests a day, where
 * rate * elapsed / 1000 computed per update would round every update
 * down to zero.  Times are split in seconds and milliseconds so that
 * no product exceeds rate * 1000 or the bucket's capacity plus rate.
 */

static void
vetting_bucket_refill(const vetting_bucket_t *b, int64_t now, uint64_t rate,
    uint64_t cap, int64_t *last, uint64_t *excess)
{
    int64_t   qn, ql, sn, sl;
    uint64_t  e, ds, drain;

    /* a bucket from an older configuration may hold more than fits now */

    if (b->excess <= 0) {
        e = 0;

    } else if ((uint64_t) b->excess > cap) {
        e = cap;

    } else {
        e = (uint64_t) b->excess;
    }

    *excess = e;

    /* a clock that goes back stands still at the bucket's last time */

    if (now <= b->last) {
        *last = b->last;
        return;
    }

    *last = now;

    if (e == 0) {
        return;
    }

    qn = vetting_floor_div(now, 1000, &sn);
    ql = vetting_floor_div(b->last, 1000, &sl);

    /* seconds are within +-2^53, so the difference cannot overflow */
    ds = (uint64_t) (qn - ql);

    if (ds > e / rate + 1) {
        *excess = 0;
        return;
    }

    drain = rate * ds + rate * (uint64_t) sn / 1000
            - rate * (uint64_t) sl / 1000;

    *excess = (drain >= e) ? 0 : e - drain;
}


static void
vetting_bucket_state(int64_t now, uint64_t rate, uint64_t cap,
    uint64_t excess, vetting_bucket_state_t *st)
{
    st->remaining = (cap - excess) / VETTING_MILLION;

    if (excess + VETTING_MILLION <= cap) {
        st->retry = 0;

    } else {
        st->retry = vetting_bucket_wait(now, rate,
                                        excess + VETTING_MILLION - cap);
    }

    st->reset = (excess == 0) ? 0 : vetting_bucket_wait(now, rate, excess);
}


/*
 * Milliseconds from now until need millionths have drained: the least
 * x >= now with floor(rate * x / 1000) >= floor(rate * now / 1000) + need,
 * counted from the start of now's second; need <= cap and rate <= 1e12
 * keep 1000 * (rate + need) far below 2^64.
 */

static int64_t
vetting_bucket_wait(int64_t now, uint64_t rate, uint64_t need)
{
    int64_t   ms;
    uint64_t  sn, target, x;

    (void) vetting_floor_div(now, 1000, &ms);
    sn = (uint64_t) ms;

    target = rate * sn / 1000 + need;
    x = (target * 1000 + rate - 1) / rate;

    return (int64_t) (x - sn);
}


/* rate and burst outside the supported range are brought into it */

static void
vetting_limit_clamp(uint64_t *rate, uint64_t *burst)
{
    if (*rate == 0) {
        *rate = 1;

    } else if (*rate > VETTING_RATE_MAX) {
        *rate = VETTING_RATE_MAX;
    }

    if (*burst == 0) {
        *burst = 1;

    } else if (*burst > VETTING_BURST_MAX) {
        *burst = VETTING_BURST_MAX;
    }
}


uint64_t
vetting_window_add(vetting_window_t *w, int64_t now, int64_t window,
    uint64_t delta)
{
    int64_t           elapsed;
    vetting_window_t  cur;

    if (window <= 0) {
        window = 1;
    }

    vetting_window_roll(w, now, window, &cur, &elapsed);

    cur.cur = (delta > UINT64_MAX - cur.cur) ? UINT64_MAX : cur.cur + delta;

    *w = cur;

    return vetting_window_estimate(w, elapsed, window);
}


uint64_t
vetting_window_count(const vetting_window_t *w, int64_t now, int64_t window)
{
    int64_t           elapsed;
    vetting_window_t  cur;

    if (window <= 0) {
        window = 1;
    }

    vetting_window_roll(w, now, window, &cur, &elapsed);

    return vetting_window_estimate(&cur, elapsed, window);
}


/*
 * Moves the two fixed windows to the one holding now, aligned to
 * multiples of window since the epoch, and gives how far into it now
 * is.  A clock that goes back stands still at the window's start.
 */

static void
vetting_window_roll(const vetting_window_t *w, int64_t now, int64_t window,
    vetting_window_t *out, int64_t *elapsed)
{
    int64_t   start, ms;
    uint64_t  ahead;

    *out = *w;

    /* times before the epoch are not expected; they count as the epoch */

    if (now < 0) {
        now = 0;
    }

    (void) vetting_floor_div(now, window, &ms);
    start = now - ms;

    if (start <= w->start) {
        *elapsed = (start == w->start) ? now - start : 0;
        return;
    }

    ahead = (uint64_t) start - (uint64_t) w->start;

    if (ahead == (uint64_t) window) {
        out->prev = w->cur;

    } else {
        out->prev = 0;
    }

    out->cur = 0;
    out->start = start;

    *elapsed = now - start;
}


static uint64_t
vetting_window_estimate(const vetting_window_t *w, int64_t elapsed,
    int64_t window)
{
    uint64_t  part;

    part = vetting_muldiv(w->prev, (uint64_t) (window - elapsed),
                          (uint64_t) window);

    return (part > UINT64_MAX - w->cur) ? UINT64_MAX : w->cur + part;
}


/*
 * floor(a * b / c) for b <= c, exact unless a * b and (a % c) * b both
 * overflow (counts in the billions over windows of months), where the
 * fraction b / c loses its lowest bits instead.
 */

static uint64_t
vetting_muldiv(uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t  q, r;

    if (a == 0 || b == 0) {
        return 0;
    }

    if (a <= UINT64_MAX / b) {
        return a * b / c;
    }

    /* a * b / c = (a / c) * b + (a % c) * b / c, and (a / c) * b <= a */

    q = a / c * b;
    r = a % c;

    while (r > UINT64_MAX / b) {
        b >>= 1;
        c >>= 1;
    }

    return q + r * b / c;
}


uint64_t
vetting_lease_size(int64_t remaining, uint64_t burst, uint64_t max)
{
    uint64_t  n;

    if (remaining < 0) {
        return 1;
    }

    n = (uint64_t) remaining / 16;

    if (n > max) {
        n = max;
    }

    if (n > burst) {
        n = burst;
    }

    return (n == 0) ? 1 : n;
}


int64_t
vetting_backoff(int64_t min, int64_t max, unsigned failures, uint32_t seed)
{
    unsigned  shift;
    uint32_t  h;
    uint64_t  delay, quarter;

    if (min < 0) {
        min = 0;
    }

    if (max < min) {
        max = min;
    }

    shift = (failures == 0) ? 0 : failures - 1;
    delay = (uint64_t) min;

    if (shift >= 63 || delay > ((uint64_t) max >> shift)) {
        delay = (uint64_t) max;

    } else {
        delay <<= shift;
    }

    quarter = delay / 4;

    if (quarter == 0) {
        return (int64_t) delay;
    }

    /* an integer hash of seed and attempt: workers spread, tests repeat */

    h = seed ^ (failures * 0x9e3779b9u);
    h ^= h >> 16;
    h *= 0x7feb352du;
    h ^= h >> 15;
    h *= 0x846ca68bu;
    h ^= h >> 16;

    delay += h % quarter;

    if (delay > (uint64_t) max) {
        delay = (uint64_t) max;
    }

    return (int64_t) delay;
}


int
vetting_parse_rate(const unsigned char *s, size_t len, uint64_t *rate)
{
    size_t    i;
    uint64_t  n, per;

    if (s == NULL || len < 4 || s[len - 3] != 'r' || s[len - 2] != '/') {
        return VETTING_ERROR;
    }

    switch (s[len - 1]) {

    case 's':
        per = 1;
        break;

    case 'm':
        per = 60;
        break;

    case 'h':
        per = 3600;
        break;

    case 'd':
        per = 86400;
        break;

    default:
        return VETTING_ERROR;
    }

    n = 0;

    for (i = 0; i < len - 3; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return VETTING_ERROR;
        }

        n = n * 10 + (s[i] - '0');

        /* far above the largest rate, and far below an overflow */

        if (n > VETTING_RATE_MAX) {
            return VETTING_ERROR;
        }
    }

    if (n == 0 || n > VETTING_RATE_MAX / VETTING_MILLION * per) {
        return VETTING_ERROR;
    }

    n = n * VETTING_MILLION / per;

    *rate = (n == 0) ? 1 : n;

    return VETTING_OK;
}


/* floor(a / b) and a - b * floor(a / b) in [0, b), for b > 0 */

static int64_t
vetting_floor_div(int64_t a, int64_t b, int64_t *rem)
{
    int64_t  q, r;

    q = a / b;
    r = a % b;

    if (r < 0) {
        r += b;
        q--;
    }

    *rem = r;

    return q;
}
