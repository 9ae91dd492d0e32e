
/*
 * Copyright (C) ngx_vetting_module authors
 *
 * Unit tests of the token response parser, the lifetime parser and the
 * SHA-256 digests.
 */


#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "vetting_token.h"


#define MAX_BYTES  65536
#define MAX_DEPTH  32


/* a SMART App Launch token response as an authorization server sends it */
static const char  smart_response[] =
    "{\n"
    "  \"access_token\": \"eyJhbGciOiJSUzM4NCIsImtpZCI6ImsxIn0."
    "eyJzdWIiOiJtLTEyMzQ1IiwiY2xpZW50X2lkIjoiYXBwLTdmM2MifQ.c2ln\",\n"
    "  \"token_type\": \"Bearer\",\n"
    "  \"expires_in\": 3600,\n"
    "  \"scope\": \"launch\\/patient openid fhirUser offline_access "
    "patient\\/*.read\",\n"
    "  \"patient\": \"m-12345\",\n"
    "  \"encounter\": null,\n"
    "  \"need_patient_banner\": true,\n"
    "  \"smart_style_url\": \"https:\\/\\/ehr.example.org\\/smart.json\",\n"
    "  \"fhirContext\": [{\"reference\": \"Patient\\/m-12345\"}],\n"
    "  \"id_token\": \"eyJhbGciOiJSUzM4NCJ9.eyJmaGlyVXNlciI6IlBhdGllbnQ"
    "vbS0xMjM0NSJ9.c2ln\",\n"
    "  \"refresh_token\": \"tGzv3JOk\\u0046\\u00300XG5Qx2TlKWIA\"\n"
    "}\n";

static const char  smart_access[] =
    "eyJhbGciOiJSUzM4NCIsImtpZCI6ImsxIn0."
    "eyJzdWIiOiJtLTEyMzQ1IiwiY2xpZW50X2lkIjoiYXBwLTdmM2MifQ.c2ln";

static const char  smart_refresh[] = "tGzv3JOkF00XG5Qx2TlKWIA";

static const char  smart_scope[] =
    "launch/patient openid fhirUser offline_access patient/*.read";


/*
 * Parses json fed in chunks of chunk bytes (0: in one feed); returns what
 * finish() returned, or VETTING_ERROR when a feed failed, and the error.
 */

static int
parse(const char *json, size_t len, size_t chunk, vetting_token_info_t *info,
    const char **error)
{
    int                      rc;
    size_t                   off, n;
    vetting_token_parser_t  *p;

    p = vetting_token_parser_create(MAX_BYTES, MAX_DEPTH);
    assert_non_null(p);

    if (chunk == 0) {
        chunk = len;
    }

    rc = VETTING_OK;

    for (off = 0; off < len; off += n) {
        n = len - off < chunk ? len - off : chunk;

        rc = vetting_token_parser_feed(p, (const unsigned char *) json + off,
                                       n);
        if (rc != VETTING_OK) {
            break;
        }
    }

    if (rc == VETTING_OK) {
        rc = vetting_token_parser_finish(p, info);

    } else {
        assert_int_equal(vetting_token_parser_finish(p, info), VETTING_ERROR);
    }

    if (error != NULL) {
        *error = vetting_token_parser_error(p);
    }

    vetting_token_parser_free(p);

    return rc;
}


static int
parse_str(const char *json, vetting_token_info_t *info, const char **error)
{
    return parse(json, strlen(json), 0, info, error);
}


static void
digest_of(const char *s, unsigned char *out)
{
    assert_int_equal(vetting_digest((const unsigned char *) s, strlen(s),
                                    out),
                     VETTING_OK);
}


static void
assert_same_info(const vetting_token_info_t *a, const vetting_token_info_t *b)
{
    assert_memory_equal(a->access_digest, b->access_digest,
                        VETTING_DIGEST_LEN);
    assert_memory_equal(a->refresh_digest, b->refresh_digest,
                        VETTING_DIGEST_LEN);
    assert_int_equal(a->member_len, b->member_len);
    assert_memory_equal(a->member, b->member, sizeof(a->member));
    assert_int_equal(a->scope_len, b->scope_len);
    assert_memory_equal(a->scope, b->scope, sizeof(a->scope));
    assert_int_equal(a->expires_in, b->expires_in);
    assert_int_equal(a->has_access, b->has_access);
    assert_int_equal(a->has_refresh, b->has_refresh);
    assert_int_equal(a->has_member, b->has_member);
    assert_int_equal(a->has_scope, b->has_scope);
    assert_int_equal(a->scope_truncated, b->scope_truncated);
    assert_int_equal(a->has_lifetime, b->has_lifetime);
    assert_int_equal(a->bad_lifetime, b->bad_lifetime);
    assert_int_equal(a->not_bearer, b->not_bearer);
    assert_int_equal(a->bad_member, b->bad_member);
}


static void
assert_zero_info(const vetting_token_info_t *info)
{
    vetting_token_info_t  zero;

    memset(&zero, 0, sizeof(vetting_token_info_t));
    assert_same_info(info, &zero);
}


static void
test_smart_response_in_one_feed(void **state)
{
    unsigned char         d[VETTING_DIGEST_LEN];
    vetting_token_info_t  info;

    (void) state;

    assert_int_equal(parse_str(smart_response, &info, NULL), VETTING_OK);

    assert_true(info.has_access);
    digest_of(smart_access, d);
    assert_memory_equal(info.access_digest, d, VETTING_DIGEST_LEN);

    assert_true(info.has_refresh);
    digest_of(smart_refresh, d);
    assert_memory_equal(info.refresh_digest, d, VETTING_DIGEST_LEN);

    assert_true(info.has_member);
    assert_false(info.bad_member);
    assert_string_equal(info.member, "m-12345");
    assert_int_equal(info.member_len, 7);

    assert_true(info.has_scope);
    assert_false(info.scope_truncated);
    assert_string_equal(info.scope, smart_scope);
    assert_int_equal(info.scope_len, strlen(smart_scope));

    assert_true(info.has_lifetime);
    assert_false(info.bad_lifetime);
    assert_int_equal(info.expires_in, 3600);

    assert_false(info.not_bearer);
}


static void
test_one_byte_chunks_give_the_same_result(void **state)
{
    vetting_token_info_t  one, whole;

    (void) state;

    assert_int_equal(parse_str(smart_response, &whole, NULL), VETTING_OK);
    assert_int_equal(parse(smart_response, strlen(smart_response), 1, &one,
                           NULL),
                     VETTING_OK);
    assert_same_info(&one, &whole);
}


static void
test_every_chunk_size_gives_the_same_result(void **state)
{
    size_t                chunk;
    vetting_token_info_t  info, whole;

    (void) state;

    assert_int_equal(parse_str(smart_response, &whole, NULL), VETTING_OK);

    for (chunk = 2; chunk <= 64; chunk++) {
        assert_int_equal(parse(smart_response, strlen(smart_response), chunk,
                               &info, NULL),
                         VETTING_OK);
        assert_same_info(&info, &whole);
    }
}


static void
test_every_split_position_gives_the_same_result(void **state)
{
    size_t                   len, k;
    vetting_token_info_t     info, whole;
    vetting_token_parser_t  *p;

    (void) state;

    len = strlen(smart_response);
    assert_int_equal(parse_str(smart_response, &whole, NULL), VETTING_OK);

    for (k = 0; k <= len; k++) {
        p = vetting_token_parser_create(MAX_BYTES, MAX_DEPTH);
        assert_non_null(p);

        assert_int_equal(vetting_token_parser_feed(p,
                             (const unsigned char *) smart_response, k),
                         VETTING_OK);
        assert_int_equal(vetting_token_parser_feed(p,
                             (const unsigned char *) smart_response + k,
                             len - k),
                         VETTING_OK);
        assert_int_equal(vetting_token_parser_finish(p, &info), VETTING_OK);
        assert_same_info(&info, &whole);

        vetting_token_parser_free(p);
    }
}


static void
test_every_three_way_split_of_escapes_gives_the_same_result(void **state)
{
    size_t                   len, i, j;
    vetting_token_info_t     info, whole;
    vetting_token_parser_t  *p;

    static const char  json[] =
        "{\"access_token\":\"a\\u0041\\\"b\",\"expires_in\":3.6e3,"
        "\"patient\":\"\\u006d-1\"}";

    (void) state;

    len = strlen(json);
    assert_int_equal(parse_str(json, &whole, NULL), VETTING_OK);

    for (i = 0; i <= len; i++) {
        for (j = i; j <= len; j++) {
            p = vetting_token_parser_create(MAX_BYTES, MAX_DEPTH);
            assert_non_null(p);

            assert_int_equal(vetting_token_parser_feed(p,
                                 (const unsigned char *) json, i),
                             VETTING_OK);
            assert_int_equal(vetting_token_parser_feed(p,
                                 (const unsigned char *) json + i, j - i),
                             VETTING_OK);
            assert_int_equal(vetting_token_parser_feed(p,
                                 (const unsigned char *) json + j, len - j),
                             VETTING_OK);
            assert_int_equal(vetting_token_parser_finish(p, &info),
                             VETTING_OK);
            assert_same_info(&info, &whole);

            vetting_token_parser_free(p);
        }
    }

    assert_int_equal(whole.expires_in, 3600);
    assert_string_equal(whole.member, "m-1");
}


static void
test_escaped_token_is_digested_unescaped(void **state)
{
    unsigned char         d[VETTING_DIGEST_LEN];
    vetting_token_info_t  info;

    (void) state;

    assert_int_equal(parse_str("{\"access_token\":\"\\u0041BC\\/d\"}", &info,
                               NULL),
                     VETTING_OK);
    assert_true(info.has_access);

    digest_of("ABC/d", d);
    assert_memory_equal(info.access_digest, d, VETTING_DIGEST_LEN);

    digest_of("\\u0041BC\\/d", d);
    assert_memory_not_equal(info.access_digest, d, VETTING_DIGEST_LEN);
}


static void
test_every_prefix_is_truncated(void **state)
{
    size_t                len, last, k;
    const char           *error;
    vetting_token_info_t  info;

    (void) state;

    len = strlen(smart_response);
    last = strrchr(smart_response, '}') - smart_response;

    assert_int_equal(parse(smart_response, 0, 0, &info, &error),
                     VETTING_ERROR);
    assert_string_equal(error, "empty");

    for (k = 1; k <= last; k++) {
        assert_int_equal(parse(smart_response, k, 0, &info, &error),
                         VETTING_ERROR);
        assert_string_equal(error, "truncated");
        assert_zero_info(&info);
    }

    assert_int_equal(parse(smart_response, last + 1, 0, &info, &error),
                     VETTING_OK);
    assert_int_equal(parse(smart_response, len, 0, &info, &error),
                     VETTING_OK);
}


static void
test_not_json_is_refused(void **state)
{
    size_t                i;
    const char           *error;
    vetting_token_info_t  info;

    static const char  *bad[] = {
        "hello",
        "<html><body>Bad Gateway</body></html>",
        "{\"access_token\":tru}",
        "{'access_token':'x'}",
        "{\"a\":1,}",
        "{\"a\" 1}",
        "{\"a\":01}",
        "{\"a\":\"\xff\xfe\"}",
        "{\"a\":\"tab\there\"}",
        "{\"a\":1} x",
        "{} {}",
        "{\"a\":\"\\x41\"}",
        "{\"a\":1 /* comment */}",
        NULL
    };

    (void) state;

    for (i = 0; bad[i] != NULL; i++) {
        assert_int_equal(parse_str(bad[i], &info, &error), VETTING_ERROR);
        assert_string_equal(error, "not JSON");
        assert_zero_info(&info);
    }
}


static void
test_top_level_must_be_an_object(void **state)
{
    size_t                i;
    const char           *error;
    vetting_token_info_t  info;

    static const char  *bad[] = {
        "[{\"access_token\":\"x\"}]",
        "\"access_token\"",
        "3600",
        "null",
        "true",
        NULL
    };

    (void) state;

    for (i = 0; bad[i] != NULL; i++) {
        assert_int_equal(parse_str(bad[i], &info, &error), VETTING_ERROR);
        assert_string_equal(error, "not an object");
    }
}


static void
test_deep_nesting_is_refused_quickly(void **state)
{
    char                    *json;
    size_t                   n, i;
    clock_t                  start;
    vetting_token_info_t     info;
    vetting_token_parser_t  *p;

    (void) state;

    n = 300000;
    json = malloc(5 * n + 16);
    assert_non_null(json);

    /* arrays below the top object */

    memcpy(json, "{\"a\":", 5);
    memset(json + 5, '[', n);

    start = clock();

    p = vetting_token_parser_create(n + 16, MAX_DEPTH);
    assert_non_null(p);
    assert_int_equal(vetting_token_parser_feed(p, (unsigned char *) json,
                                               n + 5),
                     VETTING_ERROR);
    assert_string_equal(vetting_token_parser_error(p), "too deep");
    assert_int_equal(vetting_token_parser_finish(p, &info), VETTING_ERROR);
    vetting_token_parser_free(p);

    /* objects in objects, fed one byte at a time */

    for (i = 0; i < n; i++) {
        memcpy(json + 5 * i, "{\"a\":", 5);
    }

    p = vetting_token_parser_create(5 * n, MAX_DEPTH);
    assert_non_null(p);

    for (i = 0; i < 5 * n; i++) {
        if (vetting_token_parser_feed(p, (unsigned char *) json + i, 1)
            != VETTING_OK)
        {
            break;
        }
    }

    assert_true(i < 5 * (MAX_DEPTH + 1));
    assert_string_equal(vetting_token_parser_error(p), "too deep");
    vetting_token_parser_free(p);

    /* a top-level array is refused at its first byte */

    memset(json, '[', n);

    p = vetting_token_parser_create(n, MAX_DEPTH);
    assert_non_null(p);
    assert_int_equal(vetting_token_parser_feed(p, (unsigned char *) json, n),
                     VETTING_ERROR);
    assert_string_equal(vetting_token_parser_error(p), "not an object");
    vetting_token_parser_free(p);

    assert_true(clock() - start < CLOCKS_PER_SEC);

    free(json);
}


static void
test_max_depth_is_inclusive(void **state)
{
    vetting_token_info_t     info;
    vetting_token_parser_t  *p;

    static const char  ok[] = "{\"a\":{\"b\":[]},\"patient\":\"m-1\"}";
    static const char  deep[] = "{\"a\":{\"b\":[[]]}}";

    (void) state;

    p = vetting_token_parser_create(MAX_BYTES, 3);
    assert_non_null(p);
    assert_int_equal(vetting_token_parser_feed(p, (unsigned char *) ok,
                                               strlen(ok)),
                     VETTING_OK);
    assert_int_equal(vetting_token_parser_finish(p, &info), VETTING_OK);
    assert_string_equal(info.member, "m-1");
    vetting_token_parser_free(p);

    p = vetting_token_parser_create(MAX_BYTES, 3);
    assert_non_null(p);
    assert_int_equal(vetting_token_parser_feed(p, (unsigned char *) deep,
                                               strlen(deep)),
                     VETTING_ERROR);
    assert_string_equal(vetting_token_parser_error(p), "too deep");
    vetting_token_parser_free(p);
}


static void
test_body_over_max_bytes_is_refused(void **state)
{
    char                    *json;
    size_t                   n;
    vetting_token_info_t     info;
    vetting_token_parser_t  *p;

    (void) state;

    n = 1 << 20;
    json = malloc(n);
    assert_non_null(json);

    memcpy(json, "{\"scope\":\"", 10);
    memset(json + 10, 'x', n - 12);
    memcpy(json + n - 2, "\"}", 2);

    /* exactly max_bytes is accepted */

    p = vetting_token_parser_create(n, MAX_DEPTH);
    assert_non_null(p);
    assert_int_equal(vetting_token_parser_feed(p, (unsigned char *) json, n),
                     VETTING_OK);
    assert_int_equal(vetting_token_parser_finish(p, &info), VETTING_OK);
    assert_true(info.scope_truncated);
    vetting_token_parser_free(p);

    /* one byte more is not, whatever the chunks */

    p = vetting_token_parser_create(n - 1, MAX_DEPTH);
    assert_non_null(p);
    assert_int_equal(vetting_token_parser_feed(p, (unsigned char *) json,
                                               n / 2),
                     VETTING_OK);
    assert_int_equal(vetting_token_parser_feed(p,
                                               (unsigned char *) json + n / 2,
                                               n - n / 2),
                     VETTING_ERROR);
    assert_string_equal(vetting_token_parser_error(p), "too large");
    assert_int_equal(vetting_token_parser_finish(p, &info), VETTING_ERROR);
    assert_zero_info(&info);
    vetting_token_parser_free(p);

    free(json);
}


static void
test_wrong_types_are_ignored_or_flagged(void **state)
{
    vetting_token_info_t  info;

    (void) state;

    assert_int_equal(parse_str("{\"access_token\":12345,"
                               "\"refresh_token\":null,"
                               "\"scope\":{\"a\":\"b\"},"
                               "\"patient\":[\"m-1\"],"
                               "\"token_type\":true,"
                               "\"expires_in\":null}", &info, NULL),
                     VETTING_OK);

    assert_false(info.has_access);
    assert_false(info.has_refresh);
    assert_false(info.has_scope);
    assert_false(info.has_member);
    assert_true(info.bad_member);
    assert_true(info.not_bearer);
    assert_false(info.has_lifetime);
    assert_true(info.bad_lifetime);

    assert_int_equal(parse_str("{\"patient\":12345,\"expires_in\":[3600],"
                               "\"token_type\":{\"Bearer\":1},"
                               "\"access_token\":false}", &info, NULL),
                     VETTING_OK);

    assert_false(info.has_access);
    assert_true(info.bad_member);
    assert_true(info.bad_lifetime);
    assert_true(info.not_bearer);
}


static void
test_absent_members_leave_everything_unset(void **state)
{
    vetting_token_info_t  info;

    (void) state;

    assert_int_equal(parse_str(" {} ", &info, NULL), VETTING_OK);
    assert_zero_info(&info);

    assert_int_equal(parse_str("{\"access_token\":\"\"}", &info, NULL),
                     VETTING_OK);
    assert_false(info.has_access);
}


static void
test_nested_members_do_not_count(void **state)
{
    vetting_token_info_t  info;

    (void) state;

    assert_int_equal(parse_str("{\"x\":{\"access_token\":\"a\","
                               "\"patient\":\"m-9\"},"
                               "\"y\":[{\"expires_in\":5}],"
                               "\"patient\":\"m-1\"}", &info, NULL),
                     VETTING_OK);

    assert_false(info.has_access);
    assert_false(info.has_lifetime);
    assert_false(info.bad_lifetime);
    assert_string_equal(info.member, "m-1");
}


static void
test_a_key_after_a_container_is_its_own(void **state)
{
    vetting_token_info_t  info;

    (void) state;

    /* the key "patient" must not stick to the value after the array */
    assert_int_equal(parse_str("{\"patient\":[],\"x\":\"m-1\"}", &info,
                               NULL),
                     VETTING_OK);
    assert_false(info.has_member);
    assert_true(info.bad_member);
}


static void
test_duplicate_keys_last_one_wins(void **state)
{
    unsigned char         d[VETTING_DIGEST_LEN];
    vetting_token_info_t  info;

    (void) state;

    assert_int_equal(parse_str("{\"access_token\":\"first\","
                               "\"access_token\":\"second\"}", &info, NULL),
                     VETTING_OK);
    digest_of("second", d);
    assert_memory_equal(info.access_digest, d, VETTING_DIGEST_LEN);

    assert_int_equal(parse_str("{\"access_token\":\"first\","
                               "\"access_token\":null}", &info, NULL),
                     VETTING_OK);
    assert_false(info.has_access);

    assert_int_equal(parse_str("{\"patient\":\"m-1\",\"patient\":\"m 2\"}",
                               &info, NULL),
                     VETTING_OK);
    assert_false(info.has_member);
    assert_true(info.bad_member);
    assert_int_equal(info.member_len, 0);
    assert_string_equal(info.member, "");

    assert_int_equal(parse_str("{\"patient\":\"m 2\",\"patient\":\"m-1\"}",
                               &info, NULL),
                     VETTING_OK);
    assert_true(info.has_member);
    assert_false(info.bad_member);
    assert_string_equal(info.member, "m-1");

    assert_int_equal(parse_str("{\"expires_in\":-1,\"expires_in\":60}",
                               &info, NULL),
                     VETTING_OK);
    assert_true(info.has_lifetime);
    assert_false(info.bad_lifetime);
    assert_int_equal(info.expires_in, 60);

    assert_int_equal(parse_str("{\"expires_in\":60,\"expires_in\":0}",
                               &info, NULL),
                     VETTING_OK);
    assert_false(info.has_lifetime);
    assert_true(info.bad_lifetime);
    assert_int_equal(info.expires_in, 0);

    assert_int_equal(parse_str("{\"token_type\":\"DPoP\","
                               "\"token_type\":\"bearer\"}", &info, NULL),
                     VETTING_OK);
    assert_false(info.not_bearer);

    assert_int_equal(parse_str("{\"scope\":\"a b\",\"scope\":\"c\"}", &info,
                               NULL),
                     VETTING_OK);
    assert_string_equal(info.scope, "c");
    assert_int_equal(info.scope_len, 1);
}


static void
test_token_type_is_bearer_in_any_case(void **state)
{
    size_t                i;
    vetting_token_info_t  info;
    char                  json[64];

    static const struct {
        const char  *type;
        unsigned     not_bearer;
    } cases[] = {
        { "Bearer", 0 },
        { "bearer", 0 },
        { "BEARER", 0 },
        { "bEaReR", 0 },
        { "DPoP", 1 },
        { "Bearer ", 1 },
        { "Beare", 1 },
        { "", 1 },
        { "mac", 1 },
    };

    (void) state;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(json, sizeof(json), "{\"token_type\":\"%s\"}",
                 cases[i].type);
        assert_int_equal(parse_str(json, &info, NULL), VETTING_OK);
        assert_int_equal(info.not_bearer, cases[i].not_bearer);
    }

    assert_int_equal(parse_str("{}", &info, NULL), VETTING_OK);
    assert_false(info.not_bearer);
}


static void
test_patient_must_be_a_fhir_id(void **state)
{
    size_t                i;
    char                  json[256];
    vetting_token_info_t  info;

    static const char  id64[] =
        "0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789.-cdef";

    static const char  *bad[] = {
        "",
        "m 1",
        "m/1",
        "Patient/m-1",
        "m_1",
        "\\u0000",
        "m-1\\n",
        "0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789.-cdefX",
        NULL
    };

    (void) state;

    assert_int_equal(strlen(id64), 64);
    snprintf(json, sizeof(json), "{\"patient\":\"%s\"}", id64);
    assert_int_equal(parse_str(json, &info, NULL), VETTING_OK);
    assert_true(info.has_member);
    assert_string_equal(info.member, id64);
    assert_int_equal(info.member_len, 64);

    for (i = 0; bad[i] != NULL; i++) {
        snprintf(json, sizeof(json), "{\"patient\":\"%s\"}", bad[i]);
        assert_int_equal(parse_str(json, &info, NULL), VETTING_OK);
        assert_false(info.has_member);
        assert_true(info.bad_member);
        assert_int_equal(info.member_len, 0);
    }
}


static void
test_scope_is_truncated_at_the_maximum(void **state)
{
    char                  json[VETTING_SCOPE_MAX + 64];
    size_t                n;
    vetting_token_info_t  info;

    (void) state;

    /* exactly VETTING_SCOPE_MAX bytes */

    n = snprintf(json, sizeof(json), "{\"scope\":\"");
    memset(json + n, 's', VETTING_SCOPE_MAX);
    strcpy(json + n + VETTING_SCOPE_MAX, "\"}");

    assert_int_equal(parse_str(json, &info, NULL), VETTING_OK);
    assert_true(info.has_scope);
    assert_false(info.scope_truncated);
    assert_int_equal(info.scope_len, VETTING_SCOPE_MAX);
    assert_int_equal(strlen(info.scope), VETTING_SCOPE_MAX);

    /* one more */

    memset(json + n, 's', VETTING_SCOPE_MAX + 1);
    strcpy(json + n + VETTING_SCOPE_MAX + 1, "\"}");

    assert_int_equal(parse_str(json, &info, NULL), VETTING_OK);
    assert_true(info.has_scope);
    assert_true(info.scope_truncated);
    assert_int_equal(info.scope_len, VETTING_SCOPE_MAX);
    assert_int_equal(strlen(info.scope), VETTING_SCOPE_MAX);

    /* a two-byte character across the limit is left out whole */

    memset(json + n, 's', VETTING_SCOPE_MAX - 1);
    strcpy(json + n + VETTING_SCOPE_MAX - 1, "\xc3\xa9\"}");

    assert_int_equal(parse_str(json, &info, NULL), VETTING_OK);
    assert_true(info.scope_truncated);
    assert_int_equal(info.scope_len, VETTING_SCOPE_MAX - 1);
}


static void
test_lifetime_spellings(void **state)
{
    size_t   i;
    int64_t  s;

    static const struct {
        const char  *text;
        int          rc;
        int64_t      seconds;
    } cases[] = {
        { "3600", VETTING_OK, 3600 },
        { "3600.0", VETTING_OK, 3600 },
        { "3.6e3", VETTING_OK, 3600 },
        { "36e2", VETTING_OK, 3600 },
        { "36E2", VETTING_OK, 3600 },
        { "36e+2", VETTING_OK, 3600 },
        { "3600.000", VETTING_OK, 3600 },
        { "0.36e4", VETTING_OK, 3600 },
        { "360000e-2", VETTING_OK, 3600 },
        { "3600e0", VETTING_OK, 3600 },
        { "0036", VETTING_OK, 36 },
        { "1", VETTING_OK, 1 },
        { "1.0", VETTING_OK, 1 },
        { "315360000", VETTING_OK, VETTING_LIFETIME_MAX },
        { "3.1536e8", VETTING_OK, VETTING_LIFETIME_MAX },
        { "315360000.000", VETTING_OK, VETTING_LIFETIME_MAX },
        { "0", VETTING_ERROR, 0 },
        { "0.0", VETTING_ERROR, 0 },
        { "00", VETTING_ERROR, 0 },
        { "0e5", VETTING_ERROR, 0 },
        { "-1", VETTING_ERROR, 0 },
        { "-0", VETTING_ERROR, 0 },
        { "-3600", VETTING_ERROR, 0 },
        { "+1", VETTING_ERROR, 0 },
        { "1e400", VETTING_ERROR, 0 },
        { "1e-400", VETTING_ERROR, 0 },
        { "1e99999999999999999999", VETTING_ERROR, 0 },
        { "3600.5", VETTING_ERROR, 0 },
        { "100e-3", VETTING_ERROR, 0 },
        { "0.5", VETTING_ERROR, 0 },
        { "315360001", VETTING_ERROR, 0 },
        { "1e9", VETTING_ERROR, 0 },
        { "1e19", VETTING_ERROR, 0 },
        { "9223372036854775807", VETTING_ERROR, 0 },
        { "9223372036854775808", VETTING_ERROR, 0 },
        { "18446744073709551616", VETTING_ERROR, 0 },
        { "12345678901234567890123456789012345678901234567890",
          VETTING_ERROR, 0 },
        { "", VETTING_ERROR, 0 },
        { " 3600", VETTING_ERROR, 0 },
        { "3600 ", VETTING_ERROR, 0 },
        { "0x10", VETTING_ERROR, 0 },
        { "NaN", VETTING_ERROR, 0 },
        { "Infinity", VETTING_ERROR, 0 },
        { "1.", VETTING_ERROR, 0 },
        { ".5", VETTING_ERROR, 0 },
        { "1e", VETTING_ERROR, 0 },
        { "1e+", VETTING_ERROR, 0 },
        { "1e-", VETTING_ERROR, 0 },
        { "01.5", VETTING_ERROR, 0 },
        { "01e2", VETTING_ERROR, 0 },
        { "3.6e3.0", VETTING_ERROR, 0 },
        { "3600s", VETTING_ERROR, 0 },
        { "1h", VETTING_ERROR, 0 },
    };

    (void) state;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        s = -42;

        assert_int_equal(vetting_parse_lifetime(
                             (const unsigned char *) cases[i].text,
                             strlen(cases[i].text), &s),
                         cases[i].rc);

        if (cases[i].rc == VETTING_OK) {
            assert_int_equal(s, cases[i].seconds);

        } else {
            assert_int_equal(s, -42);
        }
    }
}


static void
test_lifetime_of_long_texts(void **state)
{
    char     buf[2048];
    int64_t  s;

    (void) state;

    /* 3600 followed by a thousand zero decimals is still 3600 */

    memcpy(buf, "3600.", 5);
    memset(buf + 5, '0', 1000);
    assert_int_equal(vetting_parse_lifetime((unsigned char *) buf, 1005, &s),
                     VETTING_OK);
    assert_int_equal(s, 3600);

    /* a huge string of digits */

    memset(buf, '9', sizeof(buf));
    assert_int_equal(vetting_parse_lifetime((unsigned char *) buf,
                                            sizeof(buf), &s),
                     VETTING_ERROR);

    /* leading zeros of a digit string past the text limit */

    memset(buf, '0', sizeof(buf));
    buf[sizeof(buf) - 1] = '1';
    assert_int_equal(vetting_parse_lifetime((unsigned char *) buf,
                                            sizeof(buf), &s),
                     VETTING_ERROR);
}


static void
test_lifetime_in_the_body(void **state)
{
    size_t                i;
    char                  json[128];
    vetting_token_info_t  info;

    static const struct {
        const char  *value;
        unsigned     ok;
        int64_t      seconds;
    } cases[] = {
        { "3600", 1, 3600 },
        { "3600.0", 1, 3600 },
        { "3.6e3", 1, 3600 },
        { "\"3600\"", 1, 3600 },
        { "\"0036\"", 1, 36 },
        { "-1", 0, 0 },
        { "0", 0, 0 },
        { "1e400", 0, 0 },
        { "9223372036854775807", 0, 0 },
        { "9223372036854775808", 0, 0 },
        { "18446744073709551616", 0, 0 },
        { "3600.5", 0, 0 },
        { "\"3600.0\"", 0, 0 },
        { "\"3.6e3\"", 0, 0 },
        { "\" 3600\"", 0, 0 },
        { "\"\"", 0, 0 },
        { "\"1h\"", 0, 0 },
        { "true", 0, 0 },
        { "null", 0, 0 },
        { "{}", 0, 0 },
    };

    (void) state;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(json, sizeof(json), "{\"expires_in\":%s}", cases[i].value);

        assert_int_equal(parse_str(json, &info, NULL), VETTING_OK);
        assert_int_equal(info.has_lifetime, cases[i].ok);
        assert_int_equal(info.bad_lifetime, !cases[i].ok);
        assert_int_equal(info.expires_in, cases[i].seconds);
    }
}


static void
test_errors_are_sticky(void **state)
{
    vetting_token_info_t     info;
    vetting_token_parser_t  *p;

    (void) state;

    p = vetting_token_parser_create(MAX_BYTES, MAX_DEPTH);
    assert_non_null(p);

    assert_string_equal(vetting_token_parser_error(p), "no error");

    assert_int_equal(vetting_token_parser_feed(p, (unsigned char *) "{x", 2),
                     VETTING_ERROR);
    assert_int_equal(vetting_token_parser_feed(p, (unsigned char *) "}", 1),
                     VETTING_ERROR);
    assert_int_equal(vetting_token_parser_feed(p, NULL, 0), VETTING_ERROR);
    assert_int_equal(vetting_token_parser_finish(p, &info), VETTING_ERROR);
    assert_string_equal(vetting_token_parser_error(p), "not JSON");
    assert_zero_info(&info);

    vetting_token_parser_free(p);
}


static void
test_feed_after_finish_is_refused(void **state)
{
    vetting_token_info_t     info;
    vetting_token_parser_t  *p;

    (void) state;

    p = vetting_token_parser_create(MAX_BYTES, MAX_DEPTH);
    assert_non_null(p);

    assert_int_equal(vetting_token_parser_feed(p, (unsigned char *) "{}", 2),
                     VETTING_OK);
    assert_int_equal(vetting_token_parser_finish(p, &info), VETTING_OK);
    assert_int_equal(vetting_token_parser_feed(p, (unsigned char *) " ", 1),
                     VETTING_ERROR);
    assert_int_equal(vetting_token_parser_finish(p, &info), VETTING_ERROR);

    vetting_token_parser_free(p);
    vetting_token_parser_free(NULL);
}


static void
test_error_texts_never_quote_the_input(void **state)
{
    size_t                i, j;
    const char           *error;
    vetting_token_info_t  info;

    static const char  *bad[] = {
        "SECRET",
        "{\"access_token\":\"SECRET",
        "{\"access_token\":SECRET}",
        "[\"SECRET\"]",
        "{\"SECRET\":1}}",
        "{\"a\":\"SECRET\"} SECRET",
        NULL
    };

    static const char  *texts[] = {
        "not JSON", "not an object", "truncated", "too deep", "too large",
        "empty", NULL
    };

    (void) state;

    for (i = 0; bad[i] != NULL; i++) {
        assert_int_equal(parse_str(bad[i], &info, &error), VETTING_ERROR);
        assert_null(strstr(error, "SECRET"));

        for (j = 0; texts[j] != NULL; j++) {
            if (strcmp(error, texts[j]) == 0) {
                break;
            }
        }

        assert_non_null(texts[j]);
    }
}


static void
test_digest_known_answers(void **state)
{
    unsigned char  d[VETTING_DIGEST_LEN], hex[2 * VETTING_DIGEST_LEN];

    (void) state;

    assert_int_equal(vetting_digest((unsigned char *) "abc", 3, d),
                     VETTING_OK);
    vetting_digest_hex(d, hex);
    assert_memory_equal(hex, "ba7816bf8f01cfea414140de5dae2223"
                        "b00361a396177a9cb410ff61f20015ad", sizeof(hex));

    assert_int_equal(vetting_digest((unsigned char *) "", 0, d), VETTING_OK);
    vetting_digest_hex(d, hex);
    assert_memory_equal(hex, "e3b0c44298fc1c149afbf4c8996fb924"
                        "27ae41e4649b934ca495991b7852b855", sizeof(hex));
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_smart_response_in_one_feed),
        cmocka_unit_test(test_one_byte_chunks_give_the_same_result),
        cmocka_unit_test(test_every_chunk_size_gives_the_same_result),
        cmocka_unit_test(test_every_split_position_gives_the_same_result),
        cmocka_unit_test(
            test_every_three_way_split_of_escapes_gives_the_same_result),
        cmocka_unit_test(test_escaped_token_is_digested_unescaped),
        cmocka_unit_test(test_every_prefix_is_truncated),
        cmocka_unit_test(test_not_json_is_refused),
        cmocka_unit_test(test_top_level_must_be_an_object),
        cmocka_unit_test(test_deep_nesting_is_refused_quickly),
        cmocka_unit_test(test_max_depth_is_inclusive),
        cmocka_unit_test(test_body_over_max_bytes_is_refused),
        cmocka_unit_test(test_wrong_types_are_ignored_or_flagged),
        cmocka_unit_test(test_absent_members_leave_everything_unset),
        cmocka_unit_test(test_nested_members_do_not_count),
        cmocka_unit_test(test_a_key_after_a_container_is_its_own),
        cmocka_unit_test(test_duplicate_keys_last_one_wins),
        cmocka_unit_test(test_token_type_is_bearer_in_any_case),
        cmocka_unit_test(test_patient_must_be_a_fhir_id),
        cmocka_unit_test(test_scope_is_truncated_at_the_maximum),
        cmocka_unit_test(test_lifetime_spellings),
        cmocka_unit_test(test_lifetime_of_long_texts),
        cmocka_unit_test(test_lifetime_in_the_body),
        cmocka_unit_test(test_errors_are_sticky),
        cmocka_unit_test(test_feed_after_finish_is_refused),
        cmocka_unit_test(test_error_texts_never_quote_the_input),
        cmocka_unit_test(test_digest_known_answers),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
