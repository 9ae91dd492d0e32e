
/*
 * Copyright (C) ngx_vetting_module authors
 */


#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <yajl/yajl_parse.h>

#include "vetting_token.h"
#include "vetting_request.h"


/* longest number text looked at; any longer spelling is refused */
#define VETTING_NUMBER_MAX      1024

/* exponents beyond this are as good as infinite for a lifetime */
#define VETTING_EXPONENT_MAX    100000

/* digits of VETTING_LIFETIME_MAX */
#define VETTING_LIFETIME_DIGITS  9


typedef enum {
    VETTING_TOKEN_KEY_OTHER = 0,
    VETTING_TOKEN_KEY_ACCESS,
    VETTING_TOKEN_KEY_REFRESH,
    VETTING_TOKEN_KEY_PATIENT,
    VETTING_TOKEN_KEY_SCOPE,
    VETTING_TOKEN_KEY_TYPE,
    VETTING_TOKEN_KEY_EXPIRES
} vetting_token_key_e;


typedef enum {
    VETTING_TOKEN_VALUE_STRING = 0,
    VETTING_TOKEN_VALUE_NUMBER,
    VETTING_TOKEN_VALUE_OTHER
} vetting_token_value_e;


struct vetting_token_parser_s {
    yajl_handle             yajl;
    vetting_token_info_t    info;
    const char             *error;
    size_t                  max_bytes;
    size_t                  total;
    unsigned                max_depth;
    unsigned                depth;
    vetting_token_key_e     key;
    unsigned                started:1;
    unsigned                closed:1;
    unsigned                failed:1;
    unsigned                ended:1;
};


typedef struct {
    const char             *name;
    size_t                  len;
    vetting_token_key_e     key;
} vetting_token_member_t;


static int vetting_token_null(void *ctx);
static int vetting_token_boolean(void *ctx, int value);
static int vetting_token_number(void *ctx, const char *s, size_t len);
static int vetting_token_string(void *ctx, const unsigned char *s,
    size_t len);
static int vetting_token_start_map(void *ctx);
static int vetting_token_map_key(void *ctx, const unsigned char *s,
    size_t len);
static int vetting_token_end(void *ctx);
static int vetting_token_start_array(void *ctx);
static int vetting_token_open(vetting_token_parser_t *p, unsigned map);
static int vetting_token_value(vetting_token_parser_t *p,
    vetting_token_value_e type, const unsigned char *s, size_t len);
static int vetting_token_set_digest(vetting_token_parser_t *p,
    unsigned char *digest, const unsigned char *s, size_t len);
static void vetting_token_set_scope(vetting_token_info_t *info,
    const unsigned char *s, size_t len);
static void vetting_token_set_lifetime(vetting_token_info_t *info,
    vetting_token_value_e type, const unsigned char *s, size_t len);
static int vetting_token_is_bearer(const unsigned char *s, size_t len);
static int vetting_token_fail(vetting_token_parser_t *p, const char *error);
static int vetting_lifetime_digit(const unsigned char *p, size_t n_int,
    size_t frac, size_t i);


static const yajl_callbacks  vetting_token_callbacks = {
    vetting_token_null,
    vetting_token_boolean,
    NULL,
    NULL,
    vetting_token_number,
    vetting_token_string,
    vetting_token_start_map,
    vetting_token_map_key,
    vetting_token_end,
    vetting_token_start_array,
    vetting_token_end
};


#define vetting_token_member(name, key)  { name, sizeof(name) - 1, key }

static const vetting_token_member_t  vetting_token_members[] = {
    vetting_token_member("access_token", VETTING_TOKEN_KEY_ACCESS),
    vetting_token_member("refresh_token", VETTING_TOKEN_KEY_REFRESH),
    vetting_token_member("patient", VETTING_TOKEN_KEY_PATIENT),
    vetting_token_member("scope", VETTING_TOKEN_KEY_SCOPE),
    vetting_token_member("token_type", VETTING_TOKEN_KEY_TYPE),
    vetting_token_member("expires_in", VETTING_TOKEN_KEY_EXPIRES),
    { NULL, 0, VETTING_TOKEN_KEY_OTHER }
};


vetting_token_parser_t *
vetting_token_parser_create(size_t max_bytes, unsigned max_depth)
{
    vetting_token_parser_t  *p;

    p = calloc(1, sizeof(vetting_token_parser_t));
    if (p == NULL) {
        return NULL;
    }

    p->yajl = yajl_alloc(&vetting_token_callbacks, NULL, p);
    if (p->yajl == NULL) {
        free(p);
        return NULL;
    }

    p->max_bytes = max_bytes;
    p->max_depth = max_depth;

    return p;
}


int
vetting_token_parser_feed(vetting_token_parser_t *p,
    const unsigned char *buf, size_t len)
{
    yajl_status  rc;

    if (p->failed) {
        return VETTING_ERROR;
    }

    if (p->ended) {
        vetting_token_fail(p, "fed after the end");
        return VETTING_ERROR;
    }

    if (len > p->max_bytes - p->total) {
        vetting_token_fail(p, "too large");
        return VETTING_ERROR;
    }

    p->total += len;

    if (len == 0) {
        return VETTING_OK;
    }

    rc = yajl_parse(p->yajl, buf, len);

    if (rc != yajl_status_ok) {
        /* a callback that cancelled has already named the reason */
        vetting_token_fail(p, "not JSON");
        return VETTING_ERROR;
    }

    return VETTING_OK;
}


int
vetting_token_parser_finish(vetting_token_parser_t *p,
    vetting_token_info_t *info)
{
    yajl_status  rc;

    memset(info, 0, sizeof(vetting_token_info_t));

    if (p->failed) {
        return VETTING_ERROR;
    }

    if (p->ended) {
        vetting_token_fail(p, "finished twice");
        return VETTING_ERROR;
    }

    p->ended = 1;

    rc = yajl_complete_parse(p->yajl);

    if (rc != yajl_status_ok || !p->closed) {

        if (p->total == 0) {
            vetting_token_fail(p, "empty");

        } else if (p->started && !p->closed) {
            vetting_token_fail(p, "truncated");

        } else {
            vetting_token_fail(p, "not JSON");
        }

        return VETTING_ERROR;
    }

    memcpy(info, &p->info, sizeof(vetting_token_info_t));

    return VETTING_OK;
}


const char *
vetting_token_parser_error(vetting_token_parser_t *p)
{
    return p->error != NULL ? p->error : "no error";
}


void
vetting_token_parser_free(vetting_token_parser_t *p)
{
    if (p == NULL) {
        return;
    }

    yajl_free(p->yajl);
    free(p);
}


static int
vetting_token_null(void *ctx)
{
    return vetting_token_value(ctx, VETTING_TOKEN_VALUE_OTHER, NULL, 0);
}


static int
vetting_token_boolean(void *ctx, int value)
{
    (void) value;

    return vetting_token_value(ctx, VETTING_TOKEN_VALUE_OTHER, NULL, 0);
}


static int
vetting_token_number(void *ctx, const char *s, size_t len)
{
    return vetting_token_value(ctx, VETTING_TOKEN_VALUE_NUMBER,
                               (const unsigned char *) s, len);
}


static int
vetting_token_string(void *ctx, const unsigned char *s, size_t len)
{
    return vetting_token_value(ctx, VETTING_TOKEN_VALUE_STRING, s, len);
}


static int
vetting_token_start_map(void *ctx)
{
    return vetting_token_open(ctx, 1);
}


static int
vetting_token_start_array(void *ctx)
{
    return vetting_token_open(ctx, 0);
}


static int
vetting_token_map_key(void *ctx, const unsigned char *s, size_t len)
{
    vetting_token_parser_t  *p = ctx;

    const vetting_token_member_t  *m;

    if (p->depth != 1) {
        return 1;
    }

    p->key = VETTING_TOKEN_KEY_OTHER;

    for (m = vetting_token_members; m->name != NULL; m++) {
        if (len == m->len && memcmp(s, m->name, len) == 0) {
            p->key = m->key;
            break;
        }
    }

    return 1;
}


static int
vetting_token_end(void *ctx)
{
    vetting_token_parser_t  *p = ctx;

    p->depth--;

    if (p->depth == 0) {
        p->closed = 1;
    }

    return 1;
}


/*
 * yajl pushes a state for every '{' and '[' only after the callback
 * returned, so refusing here keeps its stack at most max_depth deep
 */

static int
vetting_token_open(vetting_token_parser_t *p, unsigned map)
{
    if (p->depth == 0) {
        if (!map) {
            return vetting_token_fail(p, "not an object");
        }

        p->started = 1;

    } else if (p->depth == 1) {
        if (!vetting_token_value(p, VETTING_TOKEN_VALUE_OTHER, NULL, 0)) {
            return 0;
        }
    }

    if (p->depth >= p->max_depth) {
        return vetting_token_fail(p, "too deep");
    }

    p->depth++;

    return 1;
}


/*
 * a member seen again replaces what an earlier one set: every branch
 * first clears the fields of its member
 */

static int
vetting_token_value(vetting_token_parser_t *p, vetting_token_value_e type,
    const unsigned char *s, size_t len)
{
    vetting_token_info_t  *info;

    if (p->depth == 0) {
        return vetting_token_fail(p, "not an object");
    }

    if (p->depth != 1) {
        return 1;
    }

    info = &p->info;

    switch (p->key) {

    case VETTING_TOKEN_KEY_ACCESS:
        info->has_access = 0;
        memset(info->access_digest, 0, VETTING_DIGEST_LEN);

        if (type == VETTING_TOKEN_VALUE_STRING && len > 0) {
            if (vetting_token_set_digest(p, info->access_digest, s, len)
                != VETTING_OK)
            {
                return 0;
            }

            info->has_access = 1;
        }

        break;

    case VETTING_TOKEN_KEY_REFRESH:
        info->has_refresh = 0;
        memset(info->refresh_digest, 0, VETTING_DIGEST_LEN);

        if (type == VETTING_TOKEN_VALUE_STRING && len > 0) {
            if (vetting_token_set_digest(p, info->refresh_digest, s, len)
                != VETTING_OK)
            {
                return 0;
            }

            info->has_refresh = 1;
        }

        break;

    case VETTING_TOKEN_KEY_PATIENT:
        info->has_member = 0;
        info->bad_member = 0;
        info->member_len = 0;
        memset(info->member, 0, sizeof(info->member));

        if (type == VETTING_TOKEN_VALUE_STRING
            && vetting_fhir_id_valid(s, len))
        {
            memcpy(info->member, s, len);
            info->member_len = len;
            info->has_member = 1;

        } else {
            info->bad_member = 1;
        }

        break;

    case VETTING_TOKEN_KEY_SCOPE:
        info->has_scope = 0;
        info->scope_truncated = 0;
        info->scope_len = 0;
        memset(info->scope, 0, sizeof(info->scope));

        if (type == VETTING_TOKEN_VALUE_STRING) {
            vetting_token_set_scope(info, s, len);
        }

        break;

    case VETTING_TOKEN_KEY_TYPE:
        info->not_bearer = (type != VETTING_TOKEN_VALUE_STRING
                            || !vetting_token_is_bearer(s, len));
        break;

    case VETTING_TOKEN_KEY_EXPIRES:
        vetting_token_set_lifetime(info, type, s, len);
        break;

    default:
        break;
    }

    /* a container value belongs to no member once it is entered */
    p->key = VETTING_TOKEN_KEY_OTHER;

    return 1;
}


static int
vetting_token_set_digest(vetting_token_parser_t *p, unsigned char *digest,
    const unsigned char *s, size_t len)
{
    if (vetting_digest(s, len, digest) != VETTING_OK) {
        vetting_token_fail(p, "digest failed");
        return VETTING_ERROR;
    }

    return VETTING_OK;
}


static void
vetting_token_set_scope(vetting_token_info_t *info, const unsigned char *s,
    size_t len)
{
    if (len > VETTING_SCOPE_MAX) {
        len = VETTING_SCOPE_MAX;

        /* do not cut a UTF-8 sequence in two */
        while (len > 0 && (s[len] & 0xc0) == 0x80) {
            len--;
        }

        info->scope_truncated = 1;
    }

    memcpy(info->scope, s, len);
    info->scope[len] = '\0';
    info->scope_len = len;
    info->has_scope = 1;
}


static void
vetting_token_set_lifetime(vetting_token_info_t *info,
    vetting_token_value_e type, const unsigned char *s, size_t len)
{
    size_t   i;
    int64_t  seconds;

    info->has_lifetime = 0;
    info->bad_lifetime = 1;
    info->expires_in = 0;

    if (type == VETTING_TOKEN_VALUE_OTHER) {
        return;
    }

    if (type == VETTING_TOKEN_VALUE_STRING) {
        for (i = 0; i < len; i++) {
            if (s[i] < '0' || s[i] > '9') {
                return;
            }
        }
    }

    if (vetting_parse_lifetime(s, len, &seconds) != VETTING_OK) {
        return;
    }

    info->expires_in = seconds;
    info->has_lifetime = 1;
    info->bad_lifetime = 0;
}


/* RFC 6749 5.1: the token type is matched without regard to case */

static int
vetting_token_is_bearer(const unsigned char *s, size_t len)
{
    size_t  i;

    if (len != 6) {
        return 0;
    }

    for (i = 0; i < 6; i++) {
        if ((s[i] | 0x20) != "bearer"[i]) {
            return 0;
        }
    }

    return 1;
}


/* returns 0, which tells yajl to stop */

static int
vetting_token_fail(vetting_token_parser_t *p, const char *error)
{
    if (!p->failed) {
        p->failed = 1;
        p->error = error;
    }

    return 0;
}


/*
 * The value is computed exactly from the decimal digits: the significant
 * digits times a power of ten.  Nothing is multiplied before the count
 * of digits shows that the result fits.
 */

int
vetting_parse_lifetime(const unsigned char *p, size_t len,
    int64_t *seconds)
{
    size_t    i, n, n_int, n_frac, frac, lead, trail;
    int64_t   exp, value;
    unsigned  negative;

    if (len == 0 || len > VETTING_NUMBER_MAX) {
        return VETTING_ERROR;
    }

    for (i = 0; i < len && p[i] >= '0' && p[i] <= '9'; i++) {
        /* void */
    }

    n_int = i;
    n_frac = 0;
    frac = i;
    exp = 0;

    if (i < len) {

        /* not a string of digits: JSON number syntax, without a sign */

        if (n_int == 0 || (p[0] == '0' && n_int > 1)) {
            return VETTING_ERROR;
        }

        if (p[i] == '.') {
            frac = ++i;

            while (i < len && p[i] >= '0' && p[i] <= '9') {
                i++;
            }

            n_frac = i - frac;

            if (n_frac == 0) {
                return VETTING_ERROR;
            }
        }

        if (i < len && (p[i] == 'e' || p[i] == 'E')) {
            i++;
            negative = 0;

            if (i < len && (p[i] == '+' || p[i] == '-')) {
                negative = (p[i] == '-');
                i++;
            }

            if (i == len) {
                return VETTING_ERROR;
            }

            while (i < len && p[i] >= '0' && p[i] <= '9') {
                if (exp < VETTING_EXPONENT_MAX) {
                    exp = exp * 10 + (p[i] - '0');
                }

                i++;
            }

            if (negative) {
                exp = -exp;
            }
        }

        if (i != len) {
            return VETTING_ERROR;
        }
    }

    /* the digits: p[0, n_int) then p[frac, frac + n_frac) */

    n = n_int + n_frac;

    for (lead = 0; lead < n; lead++) {
        if (vetting_lifetime_digit(p, n_int, frac, lead) != 0) {
            break;
        }
    }

    if (lead == n) {
        return VETTING_ERROR;
    }

    for (trail = 0; trail < n - lead; trail++) {
        if (vetting_lifetime_digit(p, n_int, frac, n - 1 - trail) != 0) {
            break;
        }
    }

    /* value = significant digits * 10^exp */

    exp += (int64_t) trail - (int64_t) n_frac;

    if (exp < 0
        || (int64_t) (n - lead - trail) + exp > VETTING_LIFETIME_DIGITS)
    {
        return VETTING_ERROR;
    }

    value = 0;

    for (i = lead; i < n - trail; i++) {
        value = value * 10 + vetting_lifetime_digit(p, n_int, frac, i);
    }

    while (exp-- > 0) {
        value *= 10;
    }

    if (value < 1 || value > VETTING_LIFETIME_MAX) {
        return VETTING_ERROR;
    }

    *seconds = value;

    return VETTING_OK;
}


static int
vetting_lifetime_digit(const unsigned char *p, size_t n_int, size_t frac,
    size_t i)
{
    return (i < n_int ? p[i] : p[frac + i - n_int]) - '0';
}


int
vetting_digest(const unsigned char *data, size_t len, unsigned char *out)
{
    unsigned int  n;

    /*
     * OpenSSL 3 looks the algorithm up on every EVP_sha256() digest, at
     * more cost than hashing a token: it is fetched once, and the
     * context reused (one per process; nginx workers are single
     * threaded)
     */

    static EVP_MD      *md;
    static EVP_MD_CTX  *ctx;

    if (md == NULL) {
        md = EVP_MD_fetch(NULL, "SHA256", NULL);
    }

    if (ctx == NULL) {
        ctx = EVP_MD_CTX_new();
    }

    if (md == NULL || ctx == NULL
        || EVP_DigestInit_ex(ctx, md, NULL) != 1
        || EVP_DigestUpdate(ctx, data, len) != 1
        || EVP_DigestFinal_ex(ctx, out, &n) != 1
        || n != VETTING_DIGEST_LEN)
    {
        memset(out, 0, VETTING_DIGEST_LEN);
        return VETTING_ERROR;
    }

    return VETTING_OK;
}


void
vetting_digest_hex(const unsigned char *digest, unsigned char *out)
{
    size_t  i;

    static const char  hex[] = "0123456789abcdef";

    for (i = 0; i < VETTING_DIGEST_LEN; i++) {
        *out++ = hex[digest[i] >> 4];
        *out++ = hex[digest[i] & 0x0f];
    }
}
