
/*
 * Copyright (C) ngx_vetting_module authors
 */


#include <string.h>

#include <openssl/crypto.h>
#include <yajl/yajl_parse.h>

#include "vetting_request.h"


/* longest base64url JWT payload looked at, and its decoded size */
#define VETTING_JWT_PAYLOAD_MAX   8192
#define VETTING_JWT_DECODED_MAX   (VETTING_JWT_PAYLOAD_MAX / 4 * 3)
#define VETTING_JWT_DEPTH         64

#define VETTING_BUNDLE_DEPTH      64

/* longest decoded parameter name the redaction compares */
#define VETTING_REDACT_NAME_MAX   256

/* a path deeper than [type]/[id]/[type]/_search is not a known shape */
#define VETTING_FHIR_SEGMENTS     4

#define VETTING_FHIR_TYPE_MAX     64


typedef enum {
    VETTING_FHIR_PATH_UNKNOWN = 0,
    VETTING_FHIR_PATH_BASE,
    VETTING_FHIR_PATH_METADATA,
    VETTING_FHIR_PATH_TYPE,
    VETTING_FHIR_PATH_INSTANCE,
    VETTING_FHIR_PATH_VREAD,
    VETTING_FHIR_PATH_HISTORY,
    VETTING_FHIR_PATH_SEARCH_SYSTEM,
    VETTING_FHIR_PATH_SEARCH_TYPE,
    VETTING_FHIR_PATH_COMPARTMENT,
    VETTING_FHIR_PATH_COMPARTMENT_SEARCH,
    VETTING_FHIR_PATH_OPERATION
} vetting_fhir_path_e;


typedef enum {
    VETTING_METHOD_OTHER = 0,
    VETTING_METHOD_GET,
    VETTING_METHOD_HEAD,
    VETTING_METHOD_OPTIONS,
    VETTING_METHOD_POST,
    VETTING_METHOD_PUT,
    VETTING_METHOD_PATCH,
    VETTING_METHOD_DELETE
} vetting_method_e;


typedef struct {
    const char                  *name;
    size_t                       len;
    vetting_method_e             method;
} vetting_method_t;


typedef struct {
    vetting_fhir_interaction_e   interaction;
    char                         action;
} vetting_fhir_map_t;


typedef enum {
    VETTING_JWT_KEY_OTHER = 0,
    VETTING_JWT_KEY_ISS,
    VETTING_JWT_KEY_SUB
} vetting_jwt_key_e;


typedef struct {
    unsigned char                iss[VETTING_APP_MAX + 1];
    unsigned char                sub[VETTING_APP_MAX + 1];
    size_t                       iss_len;
    size_t                       sub_len;
    unsigned                     depth;
    vetting_jwt_key_e            key;
    unsigned                     has_iss:1;
    unsigned                     has_sub:1;
    unsigned                     bad:1;
} vetting_jwt_ctx_t;


typedef enum {
    VETTING_BUNDLE_KEY_OTHER = 0,
    VETTING_BUNDLE_KEY_RESOURCE_TYPE,
    VETTING_BUNDLE_KEY_TYPE,
    VETTING_BUNDLE_KEY_ENTRY,
    VETTING_BUNDLE_KEY_REQUEST,
    VETTING_BUNDLE_KEY_METHOD
} vetting_bundle_key_e;


/* what the object or array at one depth is */
typedef enum {
    VETTING_BUNDLE_AT_OTHER = 0,
    VETTING_BUNDLE_AT_TOP,
    VETTING_BUNDLE_AT_ENTRIES,
    VETTING_BUNDLE_AT_ENTRY,
    VETTING_BUNDLE_AT_REQUEST
} vetting_bundle_at_e;


typedef struct {
    unsigned char                at[VETTING_BUNDLE_DEPTH + 1];
    unsigned char                key[VETTING_BUNDLE_DEPTH + 1];
    size_t                       entries;
    size_t                       max_entries;
    unsigned                     depth;
    unsigned                     seen_resource_type:1;
    unsigned                     seen_type:1;
    unsigned                     seen_entry:1;
    unsigned                     seen_request:1;
    unsigned                     seen_method:1;
    unsigned                     bundle:1;
    unsigned                     batch:1;
    unsigned                     write:1;
    unsigned                     bad:1;
} vetting_bundle_ctx_t;


static int vetting_casecmp(const unsigned char *s, size_t len,
    const char *lit);
static int vetting_hex(unsigned char c);
static int vetting_tchar(unsigned char c);
static int vetting_b64token_char(unsigned char c);
static int vetting_base64_value(unsigned char c, unsigned url);
static int vetting_base64_group(const unsigned char *s, size_t n,
    unsigned url, unsigned char *out);
static int vetting_form_byte(unsigned *state, unsigned char c,
    unsigned char *out);
static int vetting_form_find(const unsigned char *body, size_t len,
    const char *name, char *out, size_t size, size_t *out_len);
static int vetting_form_name_is(const unsigned char *s, size_t len,
    const char *name);
static int vetting_form_value(const unsigned char *s, size_t len,
    char *out, size_t size, size_t *out_len);
static int vetting_jwt_claims(const unsigned char *jwt, size_t len,
    vetting_jwt_ctx_t *ctx);
static int vetting_jwt_string(void *ctx, const unsigned char *s,
    size_t len);
static int vetting_jwt_scalar(void *ctx);
static int vetting_jwt_boolean(void *ctx, int value);
static int vetting_jwt_number(void *ctx, const char *s, size_t len);
static int vetting_jwt_open(vetting_jwt_ctx_t *jc, unsigned map);
static int vetting_jwt_start_map(void *ctx);
static int vetting_jwt_start_array(void *ctx);
static int vetting_jwt_map_key(void *ctx, const unsigned char *s,
    size_t len);
static int vetting_jwt_end(void *ctx);
static int vetting_bundle_value(vetting_bundle_ctx_t *b,
    const unsigned char *s, size_t len, unsigned string);
static int vetting_bundle_null(void *ctx);
static int vetting_bundle_boolean(void *ctx, int value);
static int vetting_bundle_number(void *ctx, const char *s, size_t len);
static int vetting_bundle_string(void *ctx, const unsigned char *s,
    size_t len);
static int vetting_bundle_open(vetting_bundle_ctx_t *b, unsigned map);
static int vetting_bundle_start_map(void *ctx);
static int vetting_bundle_start_array(void *ctx);
static int vetting_bundle_map_key(void *ctx, const unsigned char *s,
    size_t len);
static int vetting_bundle_end(void *ctx);
static vetting_method_e vetting_fhir_method(const char *method, size_t len);
static vetting_fhir_path_e vetting_fhir_path(const unsigned char *path,
    size_t len, vetting_fhir_request_t *req);
static int vetting_fhir_type_valid(const vetting_str_t *s);
static int vetting_fhir_path_id_valid(const vetting_str_t *s);
static int vetting_fhir_operation(const vetting_str_t *s,
    vetting_fhir_request_t *req);
static int vetting_fhir_is(const vetting_str_t *s, const char *lit);
static int vetting_fhir_listed(const vetting_str_t *op, const char *reads);
static int vetting_redact_name(const unsigned char *s, size_t len);
static size_t vetting_redact_copy(char *out, size_t size, size_t n,
    const void *s, size_t len);


static const yajl_callbacks  vetting_jwt_callbacks = {
    vetting_jwt_scalar,
    vetting_jwt_boolean,
    NULL,
    NULL,
    vetting_jwt_number,
    vetting_jwt_string,
    vetting_jwt_start_map,
    vetting_jwt_map_key,
    vetting_jwt_end,
    vetting_jwt_start_array,
    vetting_jwt_end
};


static const yajl_callbacks  vetting_bundle_callbacks = {
    vetting_bundle_null,
    vetting_bundle_boolean,
    NULL,
    NULL,
    vetting_bundle_number,
    vetting_bundle_string,
    vetting_bundle_start_map,
    vetting_bundle_map_key,
    vetting_bundle_end,
    vetting_bundle_start_array,
    vetting_bundle_end
};


static const vetting_method_t  vetting_methods[] = {
    { "GET", 3, VETTING_METHOD_GET },
    { "HEAD", 4, VETTING_METHOD_HEAD },
    { "OPTIONS", 7, VETTING_METHOD_OPTIONS },
    { "POST", 4, VETTING_METHOD_POST },
    { "PUT", 3, VETTING_METHOD_PUT },
    { "PATCH", 5, VETTING_METHOD_PATCH },
    { "DELETE", 6, VETTING_METHOD_DELETE },
    { NULL, 0, VETTING_METHOD_OTHER }
};


/* GET and HEAD, indexed by vetting_fhir_path_e */
static const vetting_fhir_map_t  vetting_fhir_reads[] = {
    { VETTING_FHIR_UNKNOWN, 'R' },
    { VETTING_FHIR_SEARCH_SYSTEM, 'E' },
    { VETTING_FHIR_CAPABILITIES, 'E' },
    { VETTING_FHIR_SEARCH_TYPE, 'E' },
    { VETTING_FHIR_READ, 'R' },
    { VETTING_FHIR_VREAD, 'R' },
    { VETTING_FHIR_HISTORY, 'R' },
    { VETTING_FHIR_SEARCH_SYSTEM, 'E' },
    { VETTING_FHIR_SEARCH_TYPE, 'E' },
    { VETTING_FHIR_SEARCH_COMPARTMENT, 'E' },
    { VETTING_FHIR_SEARCH_COMPARTMENT, 'E' },
    { VETTING_FHIR_OPERATION, 'E' }
};


static const char  *vetting_override_headers[] = {
    "X-HTTP-Method-Override",
    "X-HTTP-Method",
    "X-Method-Override",
    NULL
};


static const char  *vetting_secret_names[] = {
    "access_token",
    "refresh_token",
    "id_token",
    "code",
    "code_verifier",
    "client_secret",
    "client_assertion",
    "password",
    "token",
    "jwt",
    "assertion",
    "id_token_hint",
    "login_hint",
    "request",
    NULL
};


int
vetting_parse_bearer(const unsigned char *h, size_t len,
    vetting_str_t *token)
{
    size_t  i, start, end;

    token->data = NULL;
    token->len = 0;

    if (len > VETTING_AUTH_MAX) {
        return VETTING_ERROR;
    }

    for (i = 0; i < len && h[i] == ' '; i++) {
        /* void */
    }

    if (len - i < 6 || !vetting_casecmp(h + i, 6, "Bearer")) {
        return VETTING_DECLINED;
    }

    i += 6;

    if (i == len) {
        return VETTING_ERROR;
    }

    if (h[i] != ' ') {
        /* "Bearerx" is another scheme, "Bearer\t" a broken one */
        return vetting_tchar(h[i]) ? VETTING_DECLINED : VETTING_ERROR;
    }

    while (i < len && h[i] == ' ') {
        i++;
    }

    start = i;

    while (i < len && vetting_b64token_char(h[i])) {
        i++;
    }

    if (i == start) {
        return VETTING_ERROR;
    }

    while (i < len && h[i] == '=') {
        i++;
    }

    end = i;

    while (i < len && h[i] == ' ') {
        i++;
    }

    if (i != len) {
        return VETTING_ERROR;
    }

    token->data = h + start;
    token->len = end - start;

    return VETTING_OK;
}


/*
 * The base64 text is decoded three bytes at a time; the bytes after the
 * first colon are the secret and are dropped as they come, the rest of
 * the text is only checked.
 */

int
vetting_parse_basic_client(const unsigned char *h, size_t len, char *out,
    size_t size, size_t *out_len)
{
    int            got, rc;
    size_t         i, start, end, n, k, id;
    unsigned       state, colon;
    unsigned char  c, bytes[3];

    if (size > 0) {
        out[0] = '\0';
    }

    *out_len = 0;

    if (len > VETTING_AUTH_MAX) {
        return VETTING_ERROR;
    }

    for (i = 0; i < len && h[i] == ' '; i++) {
        /* void */
    }

    if (len - i < 5 || !vetting_casecmp(h + i, 5, "Basic")) {
        return VETTING_DECLINED;
    }

    i += 5;

    if (i < len && h[i] != ' ') {
        return vetting_tchar(h[i]) ? VETTING_DECLINED : VETTING_ERROR;
    }

    while (i < len && h[i] == ' ') {
        i++;
    }

    start = i;

    while (i < len && h[i] != ' ') {
        i++;
    }

    end = i;

    while (i < len && h[i] == ' ') {
        i++;
    }

    if (i != len || size == 0) {
        return VETTING_ERROR;
    }

    n = end - start;

    if (n > 0 && n % 4 == 0 && h[end - 1] == '=') {
        n -= (h[end - 2] == '=') ? 2 : 1;
    }

    if (n == 0 || n % 4 == 1) {
        return VETTING_ERROR;
    }

    id = 0;
    state = 0;
    colon = 0;

    for (k = 0; k < n; k += 4) {
        got = vetting_base64_group(h + start + k, n - k < 4 ? n - k : 4, 0,
                                   bytes);
        if (got < 0) {
            goto failed;
        }

        for (i = 0; i < (size_t) got && !colon; i++) {

            if (bytes[i] == ':') {
                colon = 1;
                break;
            }

            rc = vetting_form_byte(&state, bytes[i], &c);

            if (rc < 0) {
                goto failed;
            }

            if (rc == 0) {
                continue;
            }

            if (c < 0x20 || c == 0x7f || id >= size - 1) {
                goto failed;
            }

            out[id++] = (char) c;
        }
    }

    OPENSSL_cleanse(bytes, sizeof(bytes));

    if (!colon || state != 0 || id == 0) {
        goto failed;
    }

    out[id] = '\0';
    *out_len = id;

    return VETTING_OK;

failed:

    OPENSSL_cleanse(bytes, sizeof(bytes));
    out[0] = '\0';

    return VETTING_ERROR;
}


int
vetting_form_get(const unsigned char *body, size_t len, const char *name,
    char *out, size_t size, size_t *out_len)
{
    if (size > 0) {
        out[0] = '\0';
    }

    *out_len = 0;

    if (size == 0) {
        return VETTING_ERROR;
    }

    return vetting_form_find(body, len, name, out, size, out_len);
}


int
vetting_form_has(const unsigned char *body, size_t len, const char *name)
{
    size_t  n;

    return vetting_form_find(body, len, name, NULL, 0, &n)
           != VETTING_DECLINED;
}


/* with out NULL, the value is only checked */

static int
vetting_form_find(const unsigned char *body, size_t len, const char *name,
    char *out, size_t size, size_t *out_len)
{
    size_t    i, start, eq;
    unsigned  found;

    found = 0;
    i = 0;

    while (i < len) {
        start = i;

        while (i < len && body[i] != '&') {
            i++;
        }

        for (eq = start; eq < i && body[eq] != '='; eq++) {
            /* void */
        }

        if (i > start
            && vetting_form_name_is(body + start, eq - start, name))
        {
            if (found) {
                goto failed;
            }

            found = 1;

            if (eq < i) {
                eq++;
            }

            if (vetting_form_value(body + eq, i - eq, out, size, out_len)
                != VETTING_OK)
            {
                goto failed;
            }
        }

        /* past the '&' */
        i++;
    }

    return found ? VETTING_OK : VETTING_DECLINED;

failed:

    if (out != NULL) {
        out[0] = '\0';
    }

    *out_len = 0;

    return VETTING_ERROR;
}


/* a name that does not decode matches nothing */

static int
vetting_form_name_is(const unsigned char *s, size_t len, const char *name)
{
    int            rc;
    size_t         i, n;
    unsigned       state;
    unsigned char  c;

    n = 0;
    state = 0;

    for (i = 0; i < len; i++) {
        rc = vetting_form_byte(&state, s[i], &c);

        if (rc < 0) {
            return 0;
        }

        if (rc == 0) {
            continue;
        }

        if (name[n] == '\0' || (unsigned char) name[n] != c) {
            return 0;
        }

        n++;
    }

    return state == 0 && name[n] == '\0';
}


static int
vetting_form_value(const unsigned char *s, size_t len, char *out,
    size_t size, size_t *out_len)
{
    int            rc;
    size_t         i, n;
    unsigned       state;
    unsigned char  c;

    n = 0;
    state = 0;

    for (i = 0; i < len; i++) {
        rc = vetting_form_byte(&state, s[i], &c);

        if (rc < 0) {
            return VETTING_ERROR;
        }

        if (rc == 0) {
            continue;
        }

        /* the output is a C string: an encoded NUL cannot be kept */
        if (c == '\0') {
            return VETTING_ERROR;
        }

        if (out != NULL) {
            if (n >= size - 1) {
                return VETTING_ERROR;
            }

            out[n] = (char) c;
        }

        n++;
    }

    if (state != 0) {
        return VETTING_ERROR;
    }

    if (out != NULL) {
        out[n] = '\0';
    }

    *out_len = n;

    return VETTING_OK;
}


/*
 * One step of form decoding: returns 1 with the byte in *out, 0 inside
 * a %XX escape, VETTING_ERROR on a bad escape.  *state is 0 between
 * bytes, 1 after '%', and 0x10 + the high nibble after its first digit.
 */

static int
vetting_form_byte(unsigned *state, unsigned char c, unsigned char *out)
{
    int  v;

    if (*state == 0) {
        if (c == '%') {
            *state = 1;
            return 0;
        }

        *out = (c == '+') ? ' ' : c;
        return 1;
    }

    v = vetting_hex(c);
    if (v < 0) {
        return VETTING_ERROR;
    }

    if (*state == 1) {
        *state = 0x10 + (unsigned) v;
        return 0;
    }

    *out = (unsigned char) (((*state - 0x10) << 4) | (unsigned) v);
    *state = 0;

    return 1;
}


int
vetting_jwt_issuer(const unsigned char *jwt, size_t len, char *out,
    size_t size, size_t *out_len)
{
    vetting_jwt_ctx_t  ctx;

    /* out may be jwt itself: nothing is written before jwt is read */

    if (vetting_jwt_claims(jwt, len, &ctx) != VETTING_OK
        || ctx.iss_len >= size)
    {
        if (size > 0) {
            out[0] = '\0';
        }

        *out_len = 0;

        return VETTING_ERROR;
    }

    memcpy(out, ctx.iss, ctx.iss_len);
    out[ctx.iss_len] = '\0';
    *out_len = ctx.iss_len;

    return VETTING_OK;
}


static int
vetting_jwt_claims(const unsigned char *jwt, size_t len,
    vetting_jwt_ctx_t *ctx)
{
    int            got;
    size_t         i, dots, first, second, n, k, m;
    yajl_handle    yajl;
    yajl_status    rc;
    unsigned char  payload[VETTING_JWT_DECODED_MAX];

    memset(ctx, 0, sizeof(vetting_jwt_ctx_t));

    dots = 0;
    first = 0;
    second = 0;

    for (i = 0; i < len; i++) {
        if (jwt[i] == '.') {
            if (dots == 0) {
                first = i;

            } else {
                second = i;
            }

            if (++dots > 2) {
                return VETTING_ERROR;
            }

            continue;
        }

        if (vetting_base64_value(jwt[i], 1) < 0) {
            return VETTING_ERROR;
        }
    }

    if (dots != 2 || first == 0) {
        return VETTING_ERROR;
    }

    n = second - first - 1;

    if (n == 0 || n > VETTING_JWT_PAYLOAD_MAX || n % 4 == 1) {
        return VETTING_ERROR;
    }

    m = 0;

    for (k = 0; k < n; k += 4) {
        got = vetting_base64_group(jwt + first + 1 + k, n - k < 4 ? n - k : 4,
                                   1, payload + m);
        if (got < 0) {
            return VETTING_ERROR;
        }

        m += (size_t) got;
    }

    yajl = yajl_alloc(&vetting_jwt_callbacks, NULL, ctx);
    if (yajl == NULL) {
        return VETTING_ERROR;
    }

    rc = yajl_parse(yajl, payload, m);

    if (rc == yajl_status_ok) {
        rc = yajl_complete_parse(yajl);
    }

    yajl_free(yajl);

    if (rc != yajl_status_ok || ctx->bad || !ctx->has_iss) {
        return VETTING_ERROR;
    }

    if (ctx->has_sub
        && (ctx->sub_len != ctx->iss_len
            || memcmp(ctx->sub, ctx->iss, ctx->iss_len) != 0))
    {
        return VETTING_ERROR;
    }

    if (!vetting_client_id_valid(ctx->iss, ctx->iss_len)) {
        return VETTING_ERROR;
    }

    return VETTING_OK;
}


static int
vetting_jwt_string(void *ctx, const unsigned char *s, size_t len)
{
    vetting_jwt_ctx_t  *jc = ctx;

    if (jc->depth == 0) {
        jc->bad = 1;
        return 0;
    }

    if (jc->depth > 1 || jc->key == VETTING_JWT_KEY_OTHER) {
        return 1;
    }

    /* a longer value is no client id; a repeated claim is refused */

    if (len > VETTING_APP_MAX) {
        jc->bad = 1;
        return 0;
    }

    if (jc->key == VETTING_JWT_KEY_ISS) {
        memcpy(jc->iss, s, len);
        jc->iss_len = len;
        jc->has_iss = 1;

    } else {
        memcpy(jc->sub, s, len);
        jc->sub_len = len;
        jc->has_sub = 1;
    }

    jc->key = VETTING_JWT_KEY_OTHER;

    return 1;
}


static int
vetting_jwt_scalar(void *ctx)
{
    vetting_jwt_ctx_t  *jc = ctx;

    if (jc->depth == 0
        || (jc->depth == 1 && jc->key != VETTING_JWT_KEY_OTHER))
    {
        jc->bad = 1;
        return 0;
    }

    return 1;
}


static int
vetting_jwt_boolean(void *ctx, int value)
{
    (void) value;

    return vetting_jwt_scalar(ctx);
}


static int
vetting_jwt_number(void *ctx, const char *s, size_t len)
{
    (void) s;
    (void) len;

    return vetting_jwt_scalar(ctx);
}


static int
vetting_jwt_open(vetting_jwt_ctx_t *jc, unsigned map)
{
    if (jc->depth >= VETTING_JWT_DEPTH || (jc->depth == 0 && !map)) {
        jc->bad = 1;
        return 0;
    }

    /* "iss" and "sub" must not be containers */
    if (jc->depth > 0 && !vetting_jwt_scalar(jc)) {
        return 0;
    }

    jc->depth++;

    return 1;
}


static int
vetting_jwt_start_map(void *ctx)
{
    return vetting_jwt_open(ctx, 1);
}


static int
vetting_jwt_start_array(void *ctx)
{
    return vetting_jwt_open(ctx, 0);
}


static int
vetting_jwt_map_key(void *ctx, const unsigned char *s, size_t len)
{
    vetting_jwt_ctx_t  *jc = ctx;

    if (jc->depth != 1) {
        return 1;
    }

    jc->key = VETTING_JWT_KEY_OTHER;

    if (len == 3 && memcmp(s, "iss", 3) == 0) {
        if (jc->has_iss) {
            jc->bad = 1;
            return 0;
        }

        jc->key = VETTING_JWT_KEY_ISS;

    } else if (len == 3 && memcmp(s, "sub", 3) == 0) {
        if (jc->has_sub) {
            jc->bad = 1;
            return 0;
        }

        jc->key = VETTING_JWT_KEY_SUB;
    }

    return 1;
}


static int
vetting_jwt_end(void *ctx)
{
    vetting_jwt_ctx_t  *jc = ctx;

    jc->depth--;

    return 1;
}


void
vetting_fhir_classify(const char *method, size_t method_len,
    const unsigned char *path, size_t path_len,
    const unsigned char *query, size_t query_len, const char *reads,
    vetting_fhir_request_t *req)
{
    size_t               n;
    vetting_method_e     m;
    vetting_fhir_path_e  shape;

    memset(req, 0, sizeof(vetting_fhir_request_t));

    m = vetting_fhir_method(method, method_len);
    shape = vetting_fhir_path(path, path_len, req);

    switch (m) {

    case VETTING_METHOD_GET:
    case VETTING_METHOD_HEAD:
        req->interaction = vetting_fhir_reads[shape].interaction;
        req->action = vetting_fhir_reads[shape].action;
        return;

    case VETTING_METHOD_OPTIONS:
        req->interaction = VETTING_FHIR_OPTIONS;
        req->action = 'E';
        return;

    case VETTING_METHOD_PUT:
        req->interaction = VETTING_FHIR_UPDATE;
        req->action = 'U';
        req->write = 1;
        return;

    case VETTING_METHOD_PATCH:
        req->interaction = VETTING_FHIR_PATCH;
        req->action = 'U';
        req->write = 1;
        return;

    case VETTING_METHOD_DELETE:
        req->interaction = VETTING_FHIR_DELETE;
        req->action = 'D';
        req->write = 1;
        return;

    case VETTING_METHOD_POST:
        break;

    default:
        req->interaction = VETTING_FHIR_UNKNOWN;
        req->action = 'E';
        req->write = 1;
        req->bad_method = 1;
        return;
    }

    req->action = 'E';

    switch (shape) {

    case VETTING_FHIR_PATH_BASE:
        req->interaction = VETTING_FHIR_SEARCH_SYSTEM;

        /* a continuation names its page once */

        if (vetting_form_find(query, query_len, "_getpages", NULL, 0, &n)
            != VETTING_OK)
        {
            req->interaction = VETTING_FHIR_BATCH;
            req->write = 1;
            req->needs_body = 1;
        }

        return;

    case VETTING_FHIR_PATH_SEARCH_SYSTEM:
        req->interaction = VETTING_FHIR_SEARCH_SYSTEM;
        return;

    case VETTING_FHIR_PATH_SEARCH_TYPE:
        req->interaction = VETTING_FHIR_SEARCH_TYPE;
        return;

    case VETTING_FHIR_PATH_COMPARTMENT_SEARCH:
        req->interaction = VETTING_FHIR_SEARCH_COMPARTMENT;
        return;

    case VETTING_FHIR_PATH_OPERATION:
        req->interaction = VETTING_FHIR_OPERATION;
        req->write = !vetting_fhir_listed(&req->operation, reads);
        return;

    default:
        req->interaction = VETTING_FHIR_CREATE;
        req->action = 'C';
        req->write = 1;
        return;
    }
}


static vetting_method_e
vetting_fhir_method(const char *method, size_t len)
{
    const vetting_method_t  *m;

    for (m = vetting_methods; m->name != NULL; m++) {
        if (len == m->len && memcmp(method, m->name, len) == 0) {
            return m->method;
        }
    }

    return VETTING_METHOD_OTHER;
}


/*
 * Splits the path into at most four segments and names its shape;
 * fills the type, id and operation of req as it finds them.
 */

static vetting_fhir_path_e
vetting_fhir_path(const unsigned char *path, size_t len,
    vetting_fhir_request_t *req)
{
    size_t         i, n, start;
    vetting_str_t  seg[VETTING_FHIR_SEGMENTS];

    if (len > 0 && path[0] == '/') {
        path++;
        len--;
    }

    if (len > 0 && path[len - 1] == '/') {
        len--;
    }

    if (len == 0) {
        return VETTING_FHIR_PATH_BASE;
    }

    n = 0;
    start = 0;

    for (i = 0; i <= len; i++) {
        if (i < len && path[i] != '/') {
            continue;
        }

        if (i == start || n == VETTING_FHIR_SEGMENTS) {
            return VETTING_FHIR_PATH_UNKNOWN;
        }

        seg[n].data = path + start;
        seg[n].len = i - start;
        n++;

        start = i + 1;
    }

    if (n == 1) {
        if (vetting_fhir_is(&seg[0], "metadata")) {
            return VETTING_FHIR_PATH_METADATA;
        }

        if (vetting_fhir_is(&seg[0], "_history")) {
            return VETTING_FHIR_PATH_HISTORY;
        }

        if (vetting_fhir_is(&seg[0], "_search")) {
            return VETTING_FHIR_PATH_SEARCH_SYSTEM;
        }

        if (vetting_fhir_operation(&seg[0], req)) {
            return VETTING_FHIR_PATH_OPERATION;
        }
    }

    if (!vetting_fhir_type_valid(&seg[0])) {
        return VETTING_FHIR_PATH_UNKNOWN;
    }

    req->type = seg[0];

    if (n == 1) {
        return VETTING_FHIR_PATH_TYPE;
    }

    if (n == 2) {
        if (vetting_fhir_is(&seg[1], "_history")) {
            return VETTING_FHIR_PATH_HISTORY;
        }

        if (vetting_fhir_is(&seg[1], "_search")) {
            return VETTING_FHIR_PATH_SEARCH_TYPE;
        }

        if (vetting_fhir_operation(&seg[1], req)) {
            return VETTING_FHIR_PATH_OPERATION;
        }
    }

    if (!vetting_fhir_path_id_valid(&seg[1])) {
        return VETTING_FHIR_PATH_UNKNOWN;
    }

    req->id = seg[1];

    if (n == 2) {
        return VETTING_FHIR_PATH_INSTANCE;
    }

    if (vetting_fhir_is(&seg[2], "_history")) {
        if (n == 3) {
            return VETTING_FHIR_PATH_HISTORY;
        }

        return vetting_fhir_path_id_valid(&seg[3])
               ? VETTING_FHIR_PATH_VREAD : VETTING_FHIR_PATH_UNKNOWN;
    }

    if (n == 3 && vetting_fhir_operation(&seg[2], req)) {
        return VETTING_FHIR_PATH_OPERATION;
    }

    if (!vetting_fhir_type_valid(&seg[2]) && !vetting_fhir_is(&seg[2], "*")) {
        return VETTING_FHIR_PATH_UNKNOWN;
    }

    if (n == 3) {
        return VETTING_FHIR_PATH_COMPARTMENT;
    }

    return vetting_fhir_is(&seg[3], "_search")
           ? VETTING_FHIR_PATH_COMPARTMENT_SEARCH : VETTING_FHIR_PATH_UNKNOWN;
}


/* resource type names are letters and digits starting with a capital */

static int
vetting_fhir_type_valid(const vetting_str_t *s)
{
    size_t  i;

    if (s->len == 0 || s->len > VETTING_FHIR_TYPE_MAX
        || s->data[0] < 'A' || s->data[0] > 'Z')
    {
        return 0;
    }

    for (i = 1; i < s->len; i++) {
        if (!((s->data[i] >= 'A' && s->data[i] <= 'Z')
              || (s->data[i] >= 'a' && s->data[i] <= 'z')
              || (s->data[i] >= '0' && s->data[i] <= '9')))
        {
            return 0;
        }
    }

    return 1;
}


/* "." and ".." are valid ids, but in a path they are no resource */

static int
vetting_fhir_path_id_valid(const vetting_str_t *s)
{
    if (vetting_fhir_is(s, ".") || vetting_fhir_is(s, "..")) {
        return 0;
    }

    return vetting_fhir_id_valid(s->data, s->len);
}


static int
vetting_fhir_operation(const vetting_str_t *s, vetting_fhir_request_t *req)
{
    size_t         i;
    unsigned char  c;

    if (s->len < 2 || s->len > VETTING_FHIR_TYPE_MAX + 1
        || s->data[0] != '$')
    {
        return 0;
    }

    for (i = 1; i < s->len; i++) {
        c = s->data[i];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
              || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
        {
            return 0;
        }
    }

    req->operation.data = s->data + 1;
    req->operation.len = s->len - 1;

    return 1;
}


static int
vetting_fhir_is(const vetting_str_t *s, const char *lit)
{
    size_t  n;

    n = strlen(lit);

    return s->len == n && memcmp(s->data, lit, n) == 0;
}


static int
vetting_fhir_listed(const vetting_str_t *op, const char *reads)
{
    size_t  n;

    if (reads == NULL) {
        return 0;
    }

    for ( /* void */ ; *reads != '\0'; reads += n + 1) {
        n = strlen(reads);

        if (n == op->len && memcmp(reads, op->data, n) == 0) {
            return 1;
        }
    }

    return 0;
}


int
vetting_bundle_reads_only(const unsigned char *body, size_t len,
    size_t max_entries)
{
    yajl_handle           yajl;
    yajl_status           rc;
    vetting_bundle_ctx_t  b;

    if (len == 0 || len > VETTING_BUNDLE_MAX) {
        return VETTING_ERROR;
    }

    memset(&b, 0, sizeof(vetting_bundle_ctx_t));
    b.max_entries = max_entries;

    yajl = yajl_alloc(&vetting_bundle_callbacks, NULL, &b);
    if (yajl == NULL) {
        return VETTING_ERROR;
    }

    rc = yajl_parse(yajl, body, len);

    if (rc == yajl_status_ok) {
        rc = yajl_complete_parse(yajl);
    }

    yajl_free(yajl);

    if (rc != yajl_status_ok || b.bad || !b.bundle || !b.seen_type) {
        return VETTING_ERROR;
    }

    if (!b.batch || b.write) {
        return VETTING_DECLINED;
    }

    return VETTING_OK;
}


/*
 * Only Bundle.resourceType, Bundle.type and Bundle.entry[].request.method
 * are looked at; those members must have the expected type and must not
 * be repeated, so that no reading of the JSON finds another value.
 */

static int
vetting_bundle_value(vetting_bundle_ctx_t *b, const unsigned char *s,
    size_t len, unsigned string)
{
    vetting_bundle_at_e   at;
    vetting_bundle_key_e  key;

    if (b->depth == 0) {
        b->bad = 1;
        return 0;
    }

    at = b->at[b->depth];
    key = b->key[b->depth];

    b->key[b->depth] = VETTING_BUNDLE_KEY_OTHER;

    if (at == VETTING_BUNDLE_AT_ENTRIES) {
        /* an entry must be an object */
        b->bad = 1;
        return 0;
    }

    if (key == VETTING_BUNDLE_KEY_OTHER) {
        return 1;
    }

    if (!string || key == VETTING_BUNDLE_KEY_ENTRY
        || key == VETTING_BUNDLE_KEY_REQUEST)
    {
        b->bad = 1;
        return 0;
    }

    switch (key) {

    case VETTING_BUNDLE_KEY_RESOURCE_TYPE:
        b->bundle = (len == 6 && memcmp(s, "Bundle", 6) == 0);
        break;

    case VETTING_BUNDLE_KEY_TYPE:
        b->batch = (len == 5 && memcmp(s, "batch", 5) == 0);
        break;

    default: /* VETTING_BUNDLE_KEY_METHOD */
        if (!(len == 3 && memcmp(s, "GET", 3) == 0)
            && !(len == 4 && memcmp(s, "HEAD", 4) == 0))
        {
            b->write = 1;
        }

        break;
    }

    return 1;
}


static int
vetting_bundle_null(void *ctx)
{
    return vetting_bundle_value(ctx, NULL, 0, 0);
}


static int
vetting_bundle_boolean(void *ctx, int value)
{
    (void) value;

    return vetting_bundle_value(ctx, NULL, 0, 0);
}


static int
vetting_bundle_number(void *ctx, const char *s, size_t len)
{
    (void) s;
    (void) len;

    return vetting_bundle_value(ctx, NULL, 0, 0);
}


static int
vetting_bundle_string(void *ctx, const unsigned char *s, size_t len)
{
    return vetting_bundle_value(ctx, s, len, 1);
}


static int
vetting_bundle_open(vetting_bundle_ctx_t *b, unsigned map)
{
    vetting_bundle_at_e   at, next;
    vetting_bundle_key_e  key;

    if (b->depth >= VETTING_BUNDLE_DEPTH) {
        b->bad = 1;
        return 0;
    }

    next = VETTING_BUNDLE_AT_OTHER;

    if (b->depth == 0) {
        if (!map) {
            b->bad = 1;
            return 0;
        }

        next = VETTING_BUNDLE_AT_TOP;

    } else {
        at = b->at[b->depth];
        key = b->key[b->depth];

        b->key[b->depth] = VETTING_BUNDLE_KEY_OTHER;

        if (at == VETTING_BUNDLE_AT_ENTRIES) {
            if (!map || b->entries >= b->max_entries) {
                b->bad = 1;
                return 0;
            }

            b->entries++;
            b->seen_request = 0;
            b->seen_method = 0;
            next = VETTING_BUNDLE_AT_ENTRY;

        } else if (key == VETTING_BUNDLE_KEY_ENTRY && !map) {
            next = VETTING_BUNDLE_AT_ENTRIES;

        } else if (key == VETTING_BUNDLE_KEY_REQUEST && map) {
            next = VETTING_BUNDLE_AT_REQUEST;

        } else if (key != VETTING_BUNDLE_KEY_OTHER) {
            b->bad = 1;
            return 0;
        }
    }

    b->depth++;
    b->at[b->depth] = (unsigned char) next;
    b->key[b->depth] = VETTING_BUNDLE_KEY_OTHER;

    return 1;
}


static int
vetting_bundle_start_map(void *ctx)
{
    return vetting_bundle_open(ctx, 1);
}


static int
vetting_bundle_start_array(void *ctx)
{
    return vetting_bundle_open(ctx, 0);
}


static int
vetting_bundle_map_key(void *ctx, const unsigned char *s, size_t len)
{
    vetting_bundle_ctx_t  *b = ctx;

    unsigned               flag;
    vetting_bundle_key_e   key;

    key = VETTING_BUNDLE_KEY_OTHER;

    switch (b->at[b->depth]) {

    case VETTING_BUNDLE_AT_TOP:
        if (len == 12 && memcmp(s, "resourceType", 12) == 0) {
            key = VETTING_BUNDLE_KEY_RESOURCE_TYPE;

        } else if (len == 4 && memcmp(s, "type", 4) == 0) {
            key = VETTING_BUNDLE_KEY_TYPE;

        } else if (len == 5 && memcmp(s, "entry", 5) == 0) {
            key = VETTING_BUNDLE_KEY_ENTRY;
        }

        break;

    case VETTING_BUNDLE_AT_ENTRY:
        if (len == 7 && memcmp(s, "request", 7) == 0) {
            key = VETTING_BUNDLE_KEY_REQUEST;
        }

        break;

    case VETTING_BUNDLE_AT_REQUEST:
        if (len == 6 && memcmp(s, "method", 6) == 0) {
            key = VETTING_BUNDLE_KEY_METHOD;
        }

        break;

    default:
        break;
    }

    switch (key) {

    case VETTING_BUNDLE_KEY_RESOURCE_TYPE:
        flag = b->seen_resource_type;
        b->seen_resource_type = 1;
        break;

    case VETTING_BUNDLE_KEY_TYPE:
        flag = b->seen_type;
        b->seen_type = 1;
        break;

    case VETTING_BUNDLE_KEY_ENTRY:
        flag = b->seen_entry;
        b->seen_entry = 1;
        break;

    case VETTING_BUNDLE_KEY_REQUEST:
        flag = b->seen_request;
        b->seen_request = 1;
        break;

    case VETTING_BUNDLE_KEY_METHOD:
        flag = b->seen_method;
        b->seen_method = 1;
        break;

    default:
        flag = 0;
        break;
    }

    if (flag) {
        b->bad = 1;
        return 0;
    }

    b->key[b->depth] = (unsigned char) key;

    return 1;
}


static int
vetting_bundle_end(void *ctx)
{
    vetting_bundle_ctx_t  *b = ctx;

    /* an entry without request.method is no batch entry */
    if (b->at[b->depth] == VETTING_BUNDLE_AT_ENTRY && !b->seen_method) {
        b->bad = 1;
        return 0;
    }

    b->depth--;

    return 1;
}


size_t
vetting_redact_query(const unsigned char *q, size_t len, char *out,
    size_t size)
{
    size_t  i, n, start, eq;

    if (size == 0) {
        return 0;
    }

    n = 0;
    i = 0;

    while (i < len) {

        /* ';' is a separator to some servers: redact as if it were */

        if (q[i] == '&' || q[i] == ';') {
            n = vetting_redact_copy(out, size, n, q + i, 1);
            i++;
            continue;
        }

        start = i;

        while (i < len && q[i] != '&' && q[i] != ';') {
            i++;
        }

        for (eq = start; eq < i && q[eq] != '='; eq++) {
            /* void */
        }

        n = vetting_redact_copy(out, size, n, q + start, eq - start);

        if (eq == i) {
            continue;
        }

        n = vetting_redact_copy(out, size, n, "=", 1);

        if (vetting_redact_name(q + start, eq - start)) {
            n = vetting_redact_copy(out, size, n, "redacted", 8);

        } else {
            n = vetting_redact_copy(out, size, n, q + eq + 1, i - eq - 1);
        }
    }

    out[n] = '\0';

    return n;
}


/* a name that cannot be decoded or compared is treated as a secret */

static int
vetting_redact_name(const unsigned char *s, size_t len)
{
    int             rc;
    size_t          i, n;
    unsigned        state;
    const char    **secret;
    unsigned char   c, name[VETTING_REDACT_NAME_MAX];

    n = 0;
    state = 0;

    for (i = 0; i < len; i++) {
        rc = vetting_form_byte(&state, s[i], &c);

        if (rc < 0) {
            return 1;
        }

        if (rc == 0) {
            continue;
        }

        if (n == VETTING_REDACT_NAME_MAX) {
            return 1;
        }

        name[n++] = c;
    }

    if (state != 0) {
        return 1;
    }

    for (secret = vetting_secret_names; *secret != NULL; secret++) {
        if (vetting_casecmp(name, n, *secret)) {
            return 1;
        }
    }

    if ((n >= 6 && vetting_casecmp(name + n - 6, 6, "_token"))
        || (n >= 6 && vetting_casecmp(name + n - 6, 6, "secret")))
    {
        return 1;
    }

    return 0;
}


static size_t
vetting_redact_copy(char *out, size_t size, size_t n, const void *s,
    size_t len)
{
    if (len > size - 1 - n) {
        len = size - 1 - n;
    }

    memcpy(out + n, s, len);

    return n + len;
}


int
vetting_is_override_header(const unsigned char *name, size_t len)
{
    const char  **h;

    for (h = vetting_override_headers; *h != NULL; h++) {
        if (vetting_casecmp(name, len, *h)) {
            return 1;
        }
    }

    return 0;
}


int
vetting_fhir_id_valid(const unsigned char *s, size_t len)
{
    size_t         i;
    unsigned char  c;

    if (len == 0 || len > VETTING_MEMBER_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        c = s[i];

        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
              || (c >= '0' && c <= '9') || c == '-' || c == '.'))
        {
            return 0;
        }
    }

    return 1;
}


int
vetting_client_id_valid(const unsigned char *s, size_t len)
{
    size_t  i;

    if (len == 0 || len > VETTING_APP_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (s[i] < 0x21 || s[i] > 0x7e
            || s[i] == '"' || s[i] == '\'' || s[i] == '\\')
        {
            return 0;
        }
    }

    return 1;
}


/* ASCII case-insensitive equality of s[0, len) and a literal */

static int
vetting_casecmp(const unsigned char *s, size_t len, const char *lit)
{
    size_t         i;
    unsigned char  a, b;

    for (i = 0; i < len; i++) {
        a = s[i];
        b = (unsigned char) lit[i];

        if (b == '\0') {
            return 0;
        }

        if (a >= 'A' && a <= 'Z') {
            a |= 0x20;
        }

        if (b >= 'A' && b <= 'Z') {
            b |= 0x20;
        }

        if (a != b) {
            return 0;
        }
    }

    return lit[len] == '\0';
}


static int
vetting_hex(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    return -1;
}


/* RFC 9110 tchar: what may follow "Bearer" in another scheme's name */

static int
vetting_tchar(unsigned char c)
{
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
        || (c >= '0' && c <= '9'))
    {
        return 1;
    }

    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}


/* RFC 6750 b64token, without the trailing '=' */

static int
vetting_b64token_char(unsigned char c)
{
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
        || (c >= '0' && c <= '9'))
    {
        return 1;
    }

    return c == '-' || c == '.' || c == '_' || c == '~' || c == '+'
           || c == '/';
}


static int
vetting_base64_value(unsigned char c, unsigned url)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }

    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }

    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }

    if (c == (url ? '-' : '+')) {
        return 62;
    }

    if (c == (url ? '_' : '/')) {
        return 63;
    }

    return -1;
}


/*
 * Decodes 2 to 4 characters without padding into 1 to 3 bytes; the
 * bits left over in a short group must be zero (strict RFC 4648 3.5).
 */

static int
vetting_base64_group(const unsigned char *s, size_t n, unsigned url,
    unsigned char *out)
{
    int       v;
    size_t    i;
    uint32_t  bits;

    bits = 0;

    for (i = 0; i < n; i++) {
        v = vetting_base64_value(s[i], url);
        if (v < 0) {
            return VETTING_ERROR;
        }

        bits = (bits << 6) | (uint32_t) v;
    }

    switch (n) {

    case 4:
        out[0] = (unsigned char) (bits >> 16);
        out[1] = (unsigned char) (bits >> 8);
        out[2] = (unsigned char) bits;
        return 3;

    case 3:
        if (bits & 0x03) {
            return VETTING_ERROR;
        }

        out[0] = (unsigned char) (bits >> 10);
        out[1] = (unsigned char) (bits >> 2);
        return 2;

    case 2:
        if (bits & 0x0f) {
            return VETTING_ERROR;
        }

        out[0] = (unsigned char) (bits >> 4);
        return 1;

    default:
        return VETTING_ERROR;
    }
}
