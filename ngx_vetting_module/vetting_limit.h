
/*
 * Copyright (C) ngx_vetting_module authors
 *
 * Rule arithmetic: token buckets for request rates, sliding windows for
 * rule counters, quota leases for limits shared through Redis, and the
 * reconnect back-off.  All times are milliseconds; rates are kept in
 * millionths of a request per second, so that daily limits stay exact.
 */


#ifndef _VETTING_LIMIT_H_INCLUDED_
#define _VETTING_LIMIT_H_INCLUDED_


#include "vetting.h"


/* the largest rate (a million requests a second) and burst supported */
#define VETTING_RATE_MAX   1000000000000ULL
#define VETTING_BURST_MAX  1000000000ULL


/*
 * A token bucket: capacity "burst" requests, refilled at "rate"
 * millionths of a request per second.  A zeroed bucket is full.
 * A rate or burst of 0 counts as 1, one above the maximum as the
 * maximum.
 */
typedef struct {
    int64_t     last;       /* ms of the last update, 0 for a new bucket */
    int64_t     excess;     /* used capacity, in millionths of a request */
} vetting_bucket_t;


typedef struct {
    uint64_t    remaining;  /* whole requests still admitted now */
    int64_t     retry;      /* ms until one more request is admitted */
    int64_t     reset;      /* ms until the bucket is full again */
} vetting_bucket_state_t;


/*
 * Takes n requests from the bucket at time now.  Returns VETTING_OK and
 * updates the bucket when they fit; VETTING_DECLINED, leaving the bucket
 * as it was but for the refill, when they do not.  Fills st either way.
 * A clock that goes back is treated as standing still.
 */
int vetting_bucket_take(vetting_bucket_t *b, int64_t now, uint64_t rate,
    uint64_t burst, uint64_t n, vetting_bucket_state_t *st);

/* the bucket's state at now without taking anything */
void vetting_bucket_peek(const vetting_bucket_t *b, int64_t now,
    uint64_t rate, uint64_t burst, vetting_bucket_state_t *st);


/*
 * A sliding-window counter approximated from two fixed windows (the
 * current one and the one before), weighting the previous count by the
 * part of it still inside the sliding window.  Windows are aligned to
 * multiples of window since the epoch; a window <= 0 counts as 1 ms,
 * a time before the epoch as the epoch, and a clock that goes back
 * stands still at the current window's start.  Counts saturate.
 */
typedef struct {
    int64_t     start;      /* ms at which the current window began */
    uint64_t    cur;
    uint64_t    prev;
} vetting_window_t;


/* adds delta at time now and returns the estimated count */
uint64_t vetting_window_add(vetting_window_t *w, int64_t now,
    int64_t window, uint64_t delta);

/* the estimated count at time now */
uint64_t vetting_window_count(const vetting_window_t *w, int64_t now,
    int64_t window);


/*
 * How many requests to lease at once from a limit shared through Redis,
 * given what Redis said was left after the last lease (remaining; -1
 * when unknown) and the burst.  Large while far from the limit, one as
 * the limit nears, never more than max or burst (but at least 1).
 */
uint64_t vetting_lease_size(int64_t remaining, uint64_t burst,
    uint64_t max);


/*
 * Reconnect delay after the given number of consecutive failures
 * (1 for the first; 0 counts as 1): exponential from min to max, with
 * up to a quarter of jitter taken from seed and failures, never above
 * max.
 */
int64_t vetting_backoff(int64_t min, int64_t max, unsigned failures,
    uint32_t seed);


/*
 * Parses "10r/s", "600r/m", "100000r/h", "5r/d" into millionths of a
 * request per second (at least 1, rounded down).  Returns VETTING_OK,
 * or VETTING_ERROR for zero, junk, or a rate above VETTING_RATE_MAX.
 */
int vetting_parse_rate(const unsigned char *s, size_t len, uint64_t *rate);


#endif /* _VETTING_LIMIT_H_INCLUDED_ */
