
/*
 * Copyright (C) ngx_vetting_module authors
 *
 * Unit tests for vetting_limit.c: token bucket, sliding window, lease
 * sizes, back-off and rate parsing.
 */


#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "vetting_limit.h"


#define RPS(n)   ((uint64_t) (n) * 1000000)

/* an arbitrary wall clock time, not on a second boundary */
#define T0       1740838925123LL

#define YEAR_MS  (365LL * 24 * 3600 * 1000)


static int
parse(const char *s, uint64_t *rate)
{
    return vetting_parse_rate((const unsigned char *) s, strlen(s), rate);
}


static void
test_bucket_zeroed_admits_burst_at_once(void **state)
{
    uint64_t                i;
    vetting_bucket_t        b;
    vetting_bucket_state_t  st;

    (void) state;

    memset(&b, 0, sizeof(b));

    for (i = 0; i < 10; i++) {
        assert_int_equal(vetting_bucket_take(&b, T0, RPS(10), 10, 1, &st),
                         VETTING_OK);
        assert_int_equal(st.remaining, 9 - i);
    }

    assert_int_equal(vetting_bucket_take(&b, T0, RPS(10), 10, 1, &st),
                     VETTING_DECLINED);
    assert_int_equal(st.remaining, 0);
    assert_int_equal(st.retry, 100);
    assert_int_equal(st.reset, 1000);
    assert_int_equal(b.excess, 10 * 1000000);
}


static void
test_bucket_refills_over_time(void **state)
{
    vetting_bucket_t        b;
    vetting_bucket_state_t  st;

    (void) state;

    memset(&b, 0, sizeof(b));

    assert_int_equal(vetting_bucket_take(&b, T0, RPS(10), 10, 10, &st),
                     VETTING_OK);

    assert_int_equal(vetting_bucket_take(&b, T0 + 99, RPS(10), 10, 1, &st),
                     VETTING_DECLINED);
    assert_int_equal(st.retry, 1);

    assert_int_equal(vetting_bucket_take(&b, T0 + 100, RPS(10), 10, 1, &st),
                     VETTING_OK);
    assert_int_equal(st.remaining, 0);

    /* a long pause fills the bucket, no more */

    vetting_bucket_peek(&b, T0 + 100 + 5000, RPS(10), 10, &st);
    assert_int_equal(st.remaining, 10);
    assert_int_equal(st.retry, 0);
    assert_int_equal(st.reset, 0);
}


static void
test_bucket_declined_take_keeps_refill(void **state)
{
    vetting_bucket_t        b;
    vetting_bucket_state_t  st;

    (void) state;

    memset(&b, 0, sizeof(b));

    vetting_bucket_take(&b, T0, RPS(10), 10, 10, &st);

    assert_int_equal(vetting_bucket_take(&b, T0 + 50, RPS(10), 10, 1, &st),
                     VETTING_DECLINED);
    assert_int_equal(b.last, T0 + 50);
    assert_int_equal(b.excess, 10 * 1000000 - 500000);
    assert_int_equal(st.retry, 50);
}


static void
test_bucket_retry_is_exact(void **state)
{
    size_t                  i;
    int64_t                 now, retry;
    vetting_bucket_t        b, copy;
    vetting_bucket_state_t  st;

    static const uint64_t   rates[] = {
        RPS(3), RPS(7) / 10, 16666, 57, 1, 999999999999ULL
    };

    (void) state;

    for (i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
        memset(&b, 0, sizeof(b));

        now = T0 + (int64_t) i * 37;

        assert_int_equal(vetting_bucket_take(&b, now, rates[i], 2, 2, &st),
                         VETTING_OK);
        assert_int_equal(vetting_bucket_take(&b, now, rates[i], 2, 1, &st),
                         VETTING_DECLINED);

        retry = st.retry;
        assert_true(retry > 0);

        copy = b;
        assert_int_equal(vetting_bucket_take(&copy, now + retry - 1,
                                             rates[i], 2, 1, &st),
                         VETTING_DECLINED);

        copy = b;
        assert_int_equal(vetting_bucket_take(&copy, now + retry, rates[i], 2,
                                             1, &st),
                         VETTING_OK);
    }
}


static void
test_bucket_slow_rate_refills_under_polling(void **state)
{
    int64_t                 t, retry;
    uint64_t                rate;
    vetting_bucket_t        b;
    vetting_bucket_state_t  st;

    (void) state;

    /* 5r/d, polled every 97 ms: rounding each poll down would starve it */

    assert_int_equal(parse("5r/d", &rate), VETTING_OK);

    memset(&b, 0, sizeof(b));

    assert_int_equal(vetting_bucket_take(&b, T0, rate, 1, 1, &st),
                     VETTING_OK);
    retry = st.retry;

    for (t = T0 + 97; t < T0 + retry; t += 97) {
        assert_int_equal(vetting_bucket_take(&b, t, rate, 1, 1, &st),
                         VETTING_DECLINED);
        assert_int_equal(t + st.retry, T0 + retry);
    }

    assert_int_equal(vetting_bucket_take(&b, T0 + retry, rate, 1, 1, &st),
                     VETTING_OK);
}


static void
test_bucket_clock_going_back_stands_still(void **state)
{
    vetting_bucket_t        b;
    vetting_bucket_state_t  st;

    (void) state;

    memset(&b, 0, sizeof(b));

    vetting_bucket_take(&b, T0, RPS(10), 10, 10, &st);

    assert_int_equal(vetting_bucket_take(&b, T0 - 60000, RPS(10), 10, 1,
                                         &st),
                     VETTING_DECLINED);
    assert_int_equal(b.last, T0);
    assert_int_equal(b.excess, 10 * 1000000);
    assert_int_equal(st.retry, 100);

    /* nothing is counted twice when the clock comes back */

    assert_int_equal(vetting_bucket_take(&b, T0 + 100, RPS(10), 10, 1, &st),
                     VETTING_OK);
    assert_int_equal(vetting_bucket_take(&b, T0 + 100, RPS(10), 10, 1, &st),
                     VETTING_DECLINED);
}


static void
test_bucket_more_than_burst_never_fits(void **state)
{
    vetting_bucket_t        b;
    vetting_bucket_state_t  st;

    (void) state;

    memset(&b, 0, sizeof(b));

    assert_int_equal(vetting_bucket_take(&b, T0, RPS(1), 5, 6, &st),
                     VETTING_DECLINED);
    assert_int_equal(vetting_bucket_take(&b, T0, RPS(1), 5, UINT64_MAX, &st),
                     VETTING_DECLINED);
    assert_int_equal(st.remaining, 5);
    assert_int_equal(st.retry, 0);

    assert_int_equal(vetting_bucket_take(&b, T0, RPS(1), 5, 0, &st),
                     VETTING_OK);
    assert_int_equal(b.excess, 0);
}


static void
test_bucket_peek_changes_nothing(void **state)
{
    vetting_bucket_t        b, copy;
    vetting_bucket_state_t  st, st2;

    (void) state;

    memset(&b, 0, sizeof(b));

    vetting_bucket_take(&b, T0, RPS(2), 4, 3, &st);
    copy = b;

    vetting_bucket_peek(&b, T0 + 250, RPS(2), 4, &st);
    assert_memory_equal(&b, &copy, sizeof(b));
    assert_int_equal(st.remaining, 1);
    assert_int_equal(st.retry, 0);
    assert_int_equal(st.reset, 1250);

    vetting_bucket_take(&b, T0 + 250, RPS(2), 4, 0, &st2);
    assert_memory_equal(&st, &st2, sizeof(st));
}


static void
test_bucket_extremes_do_not_overflow(void **state)
{
    vetting_bucket_t        b;
    vetting_bucket_state_t  st;

    (void) state;

    /* the largest rate and burst */

    memset(&b, 0, sizeof(b));

    assert_int_equal(vetting_bucket_take(&b, T0, VETTING_RATE_MAX,
                                         VETTING_BURST_MAX,
                                         VETTING_BURST_MAX, &st),
                     VETTING_OK);
    assert_int_equal(st.remaining, 0);
    assert_int_equal(st.retry, 1);
    assert_int_equal(st.reset, 1000000);

    /* the smallest rate, the largest burst, 100 years later */

    memset(&b, 0, sizeof(b));

    vetting_bucket_take(&b, T0, 1, VETTING_BURST_MAX, VETTING_BURST_MAX,
                        &st);
    /* T0 is 123 ms into its second, whose share of the drain counts */
    assert_int_equal(st.reset, (int64_t) VETTING_BURST_MAX * 1000000000
                               - 123);

    vetting_bucket_peek(&b, T0 + 100 * YEAR_MS, 1, VETTING_BURST_MAX, &st);
    assert_int_equal(st.remaining, 3153);

    /* a bucket from the other end of time */

    vetting_bucket_take(&b, INT64_MAX, VETTING_RATE_MAX, VETTING_BURST_MAX,
                        1, &st);
    assert_int_equal(st.remaining, VETTING_BURST_MAX - 1);

    b.last = INT64_MIN;
    b.excess = INT64_MAX;
    assert_int_equal(vetting_bucket_take(&b, INT64_MAX, 1, 1, 1, &st),
                     VETTING_OK);

    b.last = INT64_MAX;
    b.excess = INT64_MAX;
    assert_int_equal(vetting_bucket_take(&b, INT64_MIN, UINT64_MAX,
                                         UINT64_MAX, 1, &st),
                     VETTING_DECLINED);
    assert_int_equal(st.remaining, 0);
    assert_true(st.retry > 0);
}


static void
test_bucket_bad_stored_state_is_clamped(void **state)
{
    vetting_bucket_t        b;
    vetting_bucket_state_t  st;

    (void) state;

    b.last = T0;
    b.excess = -5;

    vetting_bucket_peek(&b, T0, RPS(1), 3, &st);
    assert_int_equal(st.remaining, 3);

    /* a burst lowered by a reload: the bucket counts as full */

    b.excess = 30 * 1000000;

    assert_int_equal(vetting_bucket_take(&b, T0, RPS(1), 3, 1, &st),
                     VETTING_DECLINED);
    assert_int_equal(b.excess, 3 * 1000000);
    assert_int_equal(st.retry, 1000);

    /* rate and burst of zero count as one */

    memset(&b, 0, sizeof(b));

    assert_int_equal(vetting_bucket_take(&b, T0, 0, 0, 1, &st), VETTING_OK);
    assert_int_equal(vetting_bucket_take(&b, T0, 0, 0, 1, &st),
                     VETTING_DECLINED);
    assert_int_equal(st.retry, 1000000000 - 123);
}


static void
test_window_accumulates_in_one_window(void **state)
{
    vetting_window_t  w;

    (void) state;

    memset(&w, 0, sizeof(w));

    assert_int_equal(vetting_window_add(&w, 3600500, 1000, 2), 2);
    assert_int_equal(w.start, 3600000);
    assert_int_equal(vetting_window_add(&w, 3600999, 1000, 3), 5);
    assert_int_equal(w.cur, 5);
    assert_int_equal(w.prev, 0);
}


static void
test_window_rolls_over_by_one(void **state)
{
    vetting_window_t  w;

    (void) state;

    memset(&w, 0, sizeof(w));

    vetting_window_add(&w, 10000, 1000, 4);

    /* the start of the next window weighs the previous one in full */

    assert_int_equal(vetting_window_add(&w, 11000, 1000, 1), 5);
    assert_int_equal(w.start, 11000);
    assert_int_equal(w.prev, 4);
    assert_int_equal(w.cur, 1);

    assert_int_equal(vetting_window_count(&w, 11500, 1000), 3);
    assert_int_equal(vetting_window_count(&w, 11750, 1000), 2);
    assert_int_equal(vetting_window_count(&w, 11999, 1000), 1);

    /* counting alone does not move the windows */

    assert_int_equal(vetting_window_count(&w, 12000, 1000), 1);
    assert_int_equal(w.start, 11000);
    assert_int_equal(w.cur, 1);
}


static void
test_window_rounds_down(void **state)
{
    vetting_window_t  w;

    (void) state;

    w.start = 0;
    w.cur = 0;
    w.prev = 3;

    /* 3 * 500 / 1000 = 1.5 */

    assert_int_equal(vetting_window_count(&w, 500, 1000), 1);
    assert_int_equal(vetting_window_count(&w, 666, 1000), 1);
    assert_int_equal(vetting_window_count(&w, 667, 1000), 0);
}


static void
test_window_gap_clears_both(void **state)
{
    vetting_window_t  w;

    (void) state;

    memset(&w, 0, sizeof(w));

    vetting_window_add(&w, 10000, 1000, 4);
    vetting_window_add(&w, 11000, 1000, 6);

    assert_int_equal(vetting_window_count(&w, 12100, 1000), 5);
    assert_int_equal(vetting_window_count(&w, 13000, 1000), 0);

    assert_int_equal(vetting_window_add(&w, 13000, 1000, 1), 1);
    assert_int_equal(w.prev, 0);
    assert_int_equal(w.start, 13000);
}


static void
test_window_clock_going_back(void **state)
{
    vetting_window_t  w;

    (void) state;

    memset(&w, 0, sizeof(w));

    vetting_window_add(&w, 10000, 1000, 4);
    vetting_window_add(&w, 11500, 1000, 2);

    /* an earlier window is the current one standing still */

    assert_int_equal(vetting_window_add(&w, 9000, 1000, 1), 7);
    assert_int_equal(w.start, 11000);
    assert_int_equal(w.cur, 3);
    assert_int_equal(w.prev, 4);
}


static void
test_window_extremes(void **state)
{
    vetting_window_t  w;

    (void) state;

    w.start = 0;
    w.cur = 1;
    w.prev = UINT64_MAX;

    /* a year-long window: no overflow, and never wraps below cur */

    assert_true(vetting_window_count(&w, YEAR_MS / 2, YEAR_MS)
                >= UINT64_MAX / 2 - 2);
    assert_int_equal(vetting_window_count(&w, 0, YEAR_MS), UINT64_MAX);

    w.cur = UINT64_MAX - 1;
    assert_int_equal(vetting_window_add(&w, 0, YEAR_MS, 5), UINT64_MAX);

    /* window 0 counts as 1 ms; times before the epoch as the epoch */

    memset(&w, 0, sizeof(w));

    assert_int_equal(vetting_window_add(&w, 5, 0, 1), 1);
    assert_int_equal(vetting_window_add(&w, INT64_MIN, 1000, 1), 2);
    assert_int_equal(vetting_window_add(&w, INT64_MAX, INT64_MAX, 1), 1);
}


static void
test_lease_sizes(void **state)
{
    (void) state;

    assert_int_equal(vetting_lease_size(-1, 100, 50), 1);
    assert_int_equal(vetting_lease_size(0, 100, 50), 1);
    assert_int_equal(vetting_lease_size(15, 100, 50), 1);
    assert_int_equal(vetting_lease_size(32, 100, 50), 2);
    assert_int_equal(vetting_lease_size(800, 100, 50), 50);
    assert_int_equal(vetting_lease_size(800, 20, 50), 20);
    assert_int_equal(vetting_lease_size(INT64_MAX, UINT64_MAX, UINT64_MAX),
                     (uint64_t) INT64_MAX / 16);
    assert_int_equal(vetting_lease_size(800, 0, 0), 1);
}


static void
test_backoff_grows_within_bounds(void **state)
{
    int64_t   d, base;
    uint32_t  seed;
    unsigned  f;

    (void) state;

    for (seed = 0; seed < 1000; seed++) {
        base = 100;

        for (f = 1; f <= 10; f++) {
            d = vetting_backoff(100, 10000, f, seed);

            assert_true(d >= base);
            assert_true(d < base + base / 4 || d == 10000);
            assert_true(d <= 10000);

            base = (base * 2 > 10000) ? 10000 : base * 2;
        }
    }
}


static void
test_backoff_is_deterministic_and_spread(void **state)
{
    int64_t   d, first;
    uint32_t  seed;
    unsigned  differ;

    (void) state;

    assert_int_equal(vetting_backoff(1000, 60000, 3, 42),
                     vetting_backoff(1000, 60000, 3, 42));

    first = vetting_backoff(1000, 60000, 1, 0);
    differ = 0;

    for (seed = 1; seed < 100; seed++) {
        d = vetting_backoff(1000, 60000, 1, seed);
        differ += (d != first);
    }

    assert_true(differ > 90);
}


static void
test_backoff_extremes(void **state)
{
    (void) state;

    assert_int_equal(vetting_backoff(100, 10000, UINT32_MAX, 7), 10000);
    assert_int_equal(vetting_backoff(100, 10000, 64, 7), 10000);
    assert_int_equal(vetting_backoff(INT64_MAX / 2, INT64_MAX, 3, 7),
                     INT64_MAX);
    assert_true(vetting_backoff(INT64_MAX, INT64_MAX, 1, 7) == INT64_MAX);

    /* failures 0 is the first; max below min is min; min below 0 is 0 */

    assert_true(vetting_backoff(100, 10000, 0, 7) < 125);
    assert_int_equal(vetting_backoff(500, 100, 1, 7), 500);
    assert_int_equal(vetting_backoff(-5, 100, 1, 7), 0);
    assert_int_equal(vetting_backoff(3, 100, 1, 7), 3);
}


static void
test_parse_rate_units(void **state)
{
    uint64_t  rate;

    (void) state;

    assert_int_equal(parse("10r/s", &rate), VETTING_OK);
    assert_int_equal(rate, 10000000);
    assert_int_equal(parse("600r/m", &rate), VETTING_OK);
    assert_int_equal(rate, 10000000);
    assert_int_equal(parse("100000r/h", &rate), VETTING_OK);
    assert_int_equal(rate, 27777777);
    assert_int_equal(parse("5r/d", &rate), VETTING_OK);
    assert_int_equal(rate, 57);
    assert_int_equal(parse("1r/d", &rate), VETTING_OK);
    assert_int_equal(rate, 11);
    assert_int_equal(parse("1000000r/s", &rate), VETTING_OK);
    assert_int_equal(rate, VETTING_RATE_MAX);
    assert_int_equal(parse("007r/s", &rate), VETTING_OK);
    assert_int_equal(rate, 7000000);
}


static void
test_parse_rate_rejects_junk(void **state)
{
    size_t    i;
    uint64_t  rate;

    static const char  *bad[] = {
        "", "r/s", "0r/s", "00r/m", "10", "10r", "10r/", "10r/x", "10r/S",
        "10R/s", "10 r/s", " 10r/s", "10r/s ", "-1r/s", "+1r/s", "1.5r/s",
        "10r/ss", "10/s", "10rps", "1000001r/s", "86400000001r/d",
        "99999999999999999999999999r/s", "18446744073709551617r/s"
    };

    (void) state;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        rate = 12345;
        assert_int_equal(parse(bad[i], &rate), VETTING_ERROR);
        assert_int_equal(rate, 12345);
    }

    assert_int_equal(vetting_parse_rate(NULL, 0, &rate), VETTING_ERROR);
    assert_int_equal(vetting_parse_rate((const unsigned char *) "10r/s", 4,
                                        &rate),
                     VETTING_ERROR);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_bucket_zeroed_admits_burst_at_once),
        cmocka_unit_test(test_bucket_refills_over_time),
        cmocka_unit_test(test_bucket_declined_take_keeps_refill),
        cmocka_unit_test(test_bucket_retry_is_exact),
        cmocka_unit_test(test_bucket_slow_rate_refills_under_polling),
        cmocka_unit_test(test_bucket_clock_going_back_stands_still),
        cmocka_unit_test(test_bucket_more_than_burst_never_fits),
        cmocka_unit_test(test_bucket_peek_changes_nothing),
        cmocka_unit_test(test_bucket_extremes_do_not_overflow),
        cmocka_unit_test(test_bucket_bad_stored_state_is_clamped),
        cmocka_unit_test(test_window_accumulates_in_one_window),
        cmocka_unit_test(test_window_rolls_over_by_one),
        cmocka_unit_test(test_window_rounds_down),
        cmocka_unit_test(test_window_gap_clears_both),
        cmocka_unit_test(test_window_clock_going_back),
        cmocka_unit_test(test_window_extremes),
        cmocka_unit_test(test_lease_sizes),
        cmocka_unit_test(test_backoff_grows_within_bounds),
        cmocka_unit_test(test_backoff_is_deterministic_and_spread),
        cmocka_unit_test(test_backoff_extremes),
        cmocka_unit_test(test_parse_rate_units),
        cmocka_unit_test(test_parse_rate_rejects_junk)
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
