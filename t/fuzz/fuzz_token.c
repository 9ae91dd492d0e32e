
/*
 * Copyright (C) ngx_vetting_module authors
 *
 * Fuzzes the token response parser.  The first byte of the input picks
 * the chunk sizes; the rest is the body, parsed once in those chunks and
 * once in one piece: both must give the same answer.  The body is also
 * given to vetting_parse_lifetime(), whose answers must agree with
 * strtod() whenever it accepts.
 */


#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vetting_token.h"


#define FUZZ_MAX_BYTES  16384
#define FUZZ_MAX_DEPTH  16


typedef struct {
    int                    rc;
    const char            *error;
    vetting_token_info_t   info;
} fuzz_result_t;


static void
fuzz_parse(const uint8_t *data, size_t size, unsigned seed,
    fuzz_result_t *r)
{
    size_t                   off, n;
    vetting_token_parser_t  *p;

    p = vetting_token_parser_create(FUZZ_MAX_BYTES, FUZZ_MAX_DEPTH);
    if (p == NULL) {
        abort();
    }

    r->rc = VETTING_OK;

    for (off = 0; off < size; off += n) {

        /* seed 0: one piece; otherwise sizes 1 to 16 from a small LCG */

        if (seed == 0) {
            n = size;

        } else {
            seed = seed * 1103515245 + 12345;
            n = ((seed >> 16) & 0x0f) + 1;

            if (n > size - off) {
                n = size - off;
            }
        }

        r->rc = vetting_token_parser_feed(p, data + off, n);
        if (r->rc != VETTING_OK) {
            break;
        }
    }

    if (r->rc == VETTING_OK) {
        r->rc = vetting_token_parser_finish(p, &r->info);

    } else if (vetting_token_parser_finish(p, &r->info) != VETTING_ERROR) {
        abort();
    }

    r->error = vetting_token_parser_error(p);

    vetting_token_parser_free(p);
}


/*
 * Over FUZZ_MAX_BYTES the one piece is refused as too large at once,
 * while the chunks may meet another error first: only then may the
 * error texts differ.
 */

static void
fuzz_compare(const fuzz_result_t *a, const fuzz_result_t *b, size_t size)
{
    const vetting_token_info_t  *x, *y;

    x = &a->info;
    y = &b->info;

    if (a->rc != b->rc
        || (size <= FUZZ_MAX_BYTES && strcmp(a->error, b->error) != 0)
        || memcmp(x->access_digest, y->access_digest, VETTING_DIGEST_LEN)
        || memcmp(x->refresh_digest, y->refresh_digest, VETTING_DIGEST_LEN)
        || memcmp(x->member, y->member, sizeof(x->member))
        || memcmp(x->scope, y->scope, sizeof(x->scope))
        || x->member_len != y->member_len
        || x->scope_len != y->scope_len
        || x->expires_in != y->expires_in
        || x->has_access != y->has_access
        || x->has_refresh != y->has_refresh
        || x->has_member != y->has_member
        || x->has_scope != y->has_scope
        || x->scope_truncated != y->scope_truncated
        || x->has_lifetime != y->has_lifetime
        || x->bad_lifetime != y->bad_lifetime
        || x->not_bearer != y->not_bearer
        || x->bad_member != y->bad_member)
    {
        abort();
    }
}


static void
fuzz_check_info(const fuzz_result_t *r)
{
    const vetting_token_info_t  *info;

    info = &r->info;

    if (r->rc != VETTING_OK) {
        return;
    }

    if (info->member_len > VETTING_MEMBER_MAX
        || info->member[info->member_len] != '\0'
        || info->scope_len > VETTING_SCOPE_MAX
        || info->scope[info->scope_len] != '\0'
        || (info->has_member && info->bad_member)
        || (info->has_lifetime && info->bad_lifetime)
        || (info->has_lifetime
            && (info->expires_in < 1
                || info->expires_in > VETTING_LIFETIME_MAX)))
    {
        abort();
    }
}


static void
fuzz_lifetime(const uint8_t *data, size_t size)
{
    char     text[64];
    double   d;
    int64_t  s;

    if (vetting_parse_lifetime(data, size, &s) != VETTING_OK) {
        return;
    }

    if (s < 1 || s > VETTING_LIFETIME_MAX) {
        abort();
    }

    /* short texts can be checked against the C library */

    if (size < sizeof(text)) {
        memcpy(text, data, size);
        text[size] = '\0';

        d = strtod(text, NULL);

        if (d != (double) s) {
            abort();
        }
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_result_t  chunked, whole;

    if (size == 0) {
        return 0;
    }

    fuzz_parse(data + 1, size - 1, data[0], &chunked);
    fuzz_parse(data + 1, size - 1, 0, &whole);

    fuzz_compare(&chunked, &whole, size - 1);
    fuzz_check_info(&whole);

    fuzz_lifetime(data + 1, size - 1);

    return 0;
}
