
/*
 * Copyright (C) ngx_vetting_module authors
 *
 * Unit tests of the request-side parsers: Bearer and Basic credentials,
 * form bodies, client assertions, FHIR interaction classification, batch
 * Bundles, query redaction and the small validators.
 */


#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vetting_request.h"


#define S(s)  (const unsigned char *) (s), strlen(s)


/* base64 (url: base64url without padding) of s, into out */

static void
b64(const char *s, size_t len, unsigned url, char *out)
{
    size_t         i, n;
    uint32_t       v;
    const char    *alphabet;

    alphabet = url
        ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    n = 0;

    for (i = 0; i < len; i += 3) {
        v = (uint32_t) (unsigned char) s[i] << 16;

        if (i + 1 < len) {
            v |= (uint32_t) (unsigned char) s[i + 1] << 8;
        }

        if (i + 2 < len) {
            v |= (unsigned char) s[i + 2];
        }

        out[n++] = alphabet[(v >> 18) & 0x3f];
        out[n++] = alphabet[(v >> 12) & 0x3f];

        if (i + 1 < len) {
            out[n++] = alphabet[(v >> 6) & 0x3f];

        } else if (!url) {
            out[n++] = '=';
        }

        if (i + 2 < len) {
            out[n++] = alphabet[v & 0x3f];

        } else if (!url) {
            out[n++] = '=';
        }
    }

    out[n] = '\0';
}


/* "Basic " + base64(credentials) */

static const char *
basic(const char *credentials, size_t len)
{
    static char  h[1024];

    memcpy(h, "Basic ", 6);
    b64(credentials, len, 0, h + 6);

    return h;
}


/* a compact JWS whose payload is json */

static const char *
jwt(const char *json)
{
    size_t       n;
    static char  buf[16384];

    strcpy(buf, "eyJhbGciOiJSUzM4NCIsImtpZCI6ImsxIn0.");
    n = strlen(buf);
    b64(json, strlen(json), 1, buf + n);
    strcat(buf, ".c2lnbmF0dXJl");

    return buf;
}


static void
test_bearer_token_is_found(void **state)
{
    vetting_str_t  t;

    (void) state;

    assert_int_equal(vetting_parse_bearer(S("Bearer abc.DEF-9_~+/=="), &t),
                     VETTING_OK);
    assert_int_equal(t.len, 15);
    assert_memory_equal(t.data, "abc.DEF-9_~+/==", 15);

    assert_int_equal(vetting_parse_bearer(S("bearer x"), &t), VETTING_OK);
    assert_int_equal(t.len, 1);
    assert_int_equal(t.data[0], 'x');

    assert_int_equal(vetting_parse_bearer(S("BEARER   tok  "), &t),
                     VETTING_OK);
    assert_int_equal(t.len, 3);
    assert_memory_equal(t.data, "tok", 3);

    assert_int_equal(vetting_parse_bearer(S(" Bearer tok"), &t), VETTING_OK);
    assert_int_equal(t.len, 3);
}


static void
test_bearer_other_scheme_is_declined(void **state)
{
    vetting_str_t  t;

    (void) state;

    assert_int_equal(vetting_parse_bearer(S("Basic YTpi"), &t),
                     VETTING_DECLINED);
    assert_int_equal(vetting_parse_bearer(S("DPoP abc"), &t),
                     VETTING_DECLINED);
    assert_int_equal(vetting_parse_bearer(S("Bearerx abc"), &t),
                     VETTING_DECLINED);
    assert_int_equal(vetting_parse_bearer(S("Bear"), &t), VETTING_DECLINED);
    assert_int_equal(vetting_parse_bearer(S(""), &t), VETTING_DECLINED);
    assert_null(t.data);
    assert_int_equal(t.len, 0);
}


static void
test_bearer_malformed_is_an_error(void **state)
{
    size_t         i;
    vetting_str_t  t;

    static const char  *bad[] = {
        "Bearer",
        "Bearer ",
        "Bearer    ",
        "Bearer\tabc",
        "Bearer a b",
        "Bearer a=b",
        "Bearer =abc",
        "Bearer a,b",
        "Bearer abc\r\n",
        "Bearer abc;",
        "Bearer \"abc\"",
        "Bearer abc, Basic YTpi",
        "Bearer a\xc3\xa9",
        NULL
    };

    (void) state;

    for (i = 0; bad[i] != NULL; i++) {
        assert_int_equal(vetting_parse_bearer(S(bad[i]), &t), VETTING_ERROR);
        assert_null(t.data);
    }
}


static void
test_bearer_longer_than_the_maximum_is_an_error(void **state)
{
    char           *h;
    vetting_str_t   t;

    (void) state;

    h = malloc(VETTING_AUTH_MAX + 1);
    assert_non_null(h);

    memcpy(h, "Bearer ", 7);
    memset(h + 7, 'a', VETTING_AUTH_MAX + 1 - 7);

    assert_int_equal(vetting_parse_bearer((unsigned char *) h,
                                          VETTING_AUTH_MAX, &t),
                     VETTING_OK);
    assert_int_equal(t.len, VETTING_AUTH_MAX - 7);

    assert_int_equal(vetting_parse_bearer((unsigned char *) h,
                                          VETTING_AUTH_MAX + 1, &t),
                     VETTING_ERROR);

    free(h);
}


static void
test_basic_client_id_is_decoded(void **state)
{
    char    id[VETTING_APP_MAX + 1];
    size_t  n;

    (void) state;

    assert_int_equal(vetting_parse_basic_client(
                         S("Basic YXBwLTdmM2M6c2VjcmV0"), id, sizeof(id), &n),
                     VETTING_OK);
    assert_string_equal(id, "app-7f3c");
    assert_int_equal(n, 8);

    assert_int_equal(vetting_parse_basic_client(
                         S("basic   YXBwLTdmM2M6c2VjcmV0  "), id, sizeof(id),
                         &n),
                     VETTING_OK);
    assert_string_equal(id, "app-7f3c");
}


static void
test_basic_client_id_is_form_url_decoded(void **state)
{
    char    id[VETTING_APP_MAX + 1];
    size_t  n;

    (void) state;

    assert_int_equal(vetting_parse_basic_client(S(basic("my%20app%2B1:pw",
                                                        15)),
                                                id, sizeof(id), &n),
                     VETTING_OK);
    assert_string_equal(id, "my app+1");
    assert_int_equal(n, 8);

    assert_int_equal(vetting_parse_basic_client(S(basic("a+b:pw", 6)),
                                                id, sizeof(id), &n),
                     VETTING_OK);
    assert_string_equal(id, "a b");

    /* an encoded colon belongs to the id; the first raw one ends it */
    assert_int_equal(vetting_parse_basic_client(S(basic("x%3Ay:p:w", 9)),
                                                id, sizeof(id), &n),
                     VETTING_OK);
    assert_string_equal(id, "x:y");

    assert_int_equal(vetting_parse_basic_client(S(basic("%61pp%2d1:", 10)),
                                                id, sizeof(id), &n),
                     VETTING_OK);
    assert_string_equal(id, "app-1");
}


static void
test_basic_padding_is_optional(void **state)
{
    char    id[16];
    size_t  n;

    (void) state;

    /* "a:" */
    assert_int_equal(vetting_parse_basic_client(S("Basic YTo="), id,
                                                sizeof(id), &n),
                     VETTING_OK);
    assert_string_equal(id, "a");

    assert_int_equal(vetting_parse_basic_client(S("Basic YTo"), id,
                                                sizeof(id), &n),
                     VETTING_OK);
    assert_string_equal(id, "a");

    /* "ab:" and "ab:c" */
    assert_int_equal(vetting_parse_basic_client(S("Basic YWI6"), id,
                                                sizeof(id), &n),
                     VETTING_OK);
    assert_string_equal(id, "ab");

    assert_int_equal(vetting_parse_basic_client(S("Basic YWI6Yw=="), id,
                                                sizeof(id), &n),
                     VETTING_OK);
    assert_string_equal(id, "ab");
}


static void
test_basic_malformed_base64_is_an_error(void **state)
{
    char    id[16];
    size_t  i, n;

    static const char  *bad[] = {
        "Basic",
        "Basic ",
        "Basic YTpi!",
        "Basic YT=pi",
        "Basic YTo==",
        "Basic YTo===",
        "Basic Y",
        "Basic YTpiY",
        "Basic ====",
        "Basic YTp=",
        "Basic YWI6Yx==",
        "Basic YTpi YTpi",
        "Basic YT\tpi",
        "Basic YTpi\n",
        "Basic YT-i",
        "Basic\tYTpi",
        NULL
    };

    (void) state;

    for (i = 0; bad[i] != NULL; i++) {
        strcpy(id, "untouched");
        n = 99;

        assert_int_equal(vetting_parse_basic_client(S(bad[i]), id,
                                                    sizeof(id), &n),
                         VETTING_ERROR);
        assert_string_equal(id, "");
        assert_int_equal(n, 0);
    }
}


static void
test_basic_bad_client_ids_are_errors(void **state)
{
    char    id[8];
    size_t  n;

    (void) state;

    /* no colon */
    assert_int_equal(vetting_parse_basic_client(S(basic("app", 3)), id,
                                                sizeof(id), &n),
                     VETTING_ERROR);

    /* empty id */
    assert_int_equal(vetting_parse_basic_client(S(basic(":secret", 7)), id,
                                                sizeof(id), &n),
                     VETTING_ERROR);
    assert_int_equal(vetting_parse_basic_client(S(basic("%:secret", 8)), id,
                                                sizeof(id), &n),
                     VETTING_ERROR);

    /* control bytes, raw or encoded */
    assert_int_equal(vetting_parse_basic_client(S(basic("a\x01" "b:s", 5)),
                                                id, sizeof(id), &n),
                     VETTING_ERROR);
    assert_int_equal(vetting_parse_basic_client(S(basic("a%01b:s", 7)),
                                                id, sizeof(id), &n),
                     VETTING_ERROR);
    assert_int_equal(vetting_parse_basic_client(S(basic("a%7Fb:s", 7)),
                                                id, sizeof(id), &n),
                     VETTING_ERROR);
    assert_int_equal(vetting_parse_basic_client(S(basic("a\0b:s", 5)),
                                                id, sizeof(id), &n),
                     VETTING_ERROR);

    /* bad escapes */
    assert_int_equal(vetting_parse_basic_client(S(basic("a%zz:s", 6)),
                                                id, sizeof(id), &n),
                     VETTING_ERROR);
    assert_int_equal(vetting_parse_basic_client(S(basic("a%4:s", 5)),
                                                id, sizeof(id), &n),
                     VETTING_ERROR);

    /* size - 1 bytes fit, size do not */
    assert_int_equal(vetting_parse_basic_client(S(basic("1234567:s", 9)),
                                                id, sizeof(id), &n),
                     VETTING_OK);
    assert_string_equal(id, "1234567");
    assert_int_equal(vetting_parse_basic_client(S(basic("12345678:s", 10)),
                                                id, sizeof(id), &n),
                     VETTING_ERROR);
    assert_string_equal(id, "");
    assert_int_equal(vetting_parse_basic_client(S(basic("1%20:s", 6)),
                                                id, 0, &n),
                     VETTING_ERROR);
}


static void
test_basic_secret_is_never_copied(void **state)
{
    char    id[64];
    size_t  i, n;

    (void) state;

    memset(id, 'Z', sizeof(id));

    assert_int_equal(vetting_parse_basic_client(
                         S(basic("app:SECRET-SECRET-SECRET", 24)), id,
                         sizeof(id), &n),
                     VETTING_OK);
    assert_string_equal(id, "app");

    /* past the NUL the buffer is as it was */
    for (i = 4; i < sizeof(id); i++) {
        assert_int_equal(id[i], 'Z');
    }

    /* a secret with control bytes and colons is not looked at */
    assert_int_equal(vetting_parse_basic_client(S(basic("app:\x01:%zz", 8)),
                                                id, sizeof(id), &n),
                     VETTING_OK);
    assert_string_equal(id, "app");
}


static void
test_basic_other_scheme_is_declined(void **state)
{
    char    id[16];
    size_t  n;

    (void) state;

    assert_int_equal(vetting_parse_basic_client(S("Bearer abc"), id,
                                                sizeof(id), &n),
                     VETTING_DECLINED);
    assert_int_equal(vetting_parse_basic_client(S("Basicx YTpi"), id,
                                                sizeof(id), &n),
                     VETTING_DECLINED);
    assert_int_equal(vetting_parse_basic_client(S(""), id, sizeof(id), &n),
                     VETTING_DECLINED);
}


static void
test_form_value_is_decoded(void **state)
{
    char    v[128];
    size_t  n;

    static const char  body[] =
        "grant_type=authorization_code&code=SplxlOBe"
        "&redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb"
        "&code_verifier=dBjftJeZ4CVP&client_id=app-7f3c"
        "&scope=launch%2fpatient+openid";

    (void) state;

    assert_int_equal(vetting_form_get(S(body), "client_id", v, sizeof(v),
                                      &n),
                     VETTING_OK);
    assert_string_equal(v, "app-7f3c");
    assert_int_equal(n, 8);

    assert_int_equal(vetting_form_get(S(body), "redirect_uri", v, sizeof(v),
                                      &n),
                     VETTING_OK);
    assert_string_equal(v, "https://app.example.com/cb");

    assert_int_equal(vetting_form_get(S(body), "scope", v, sizeof(v), &n),
                     VETTING_OK);
    assert_string_equal(v, "launch/patient openid");

    assert_int_equal(vetting_form_get(S(body), "grant_type", v, sizeof(v),
                                      &n),
                     VETTING_OK);
    assert_string_equal(v, "authorization_code");

    assert_int_equal(vetting_form_has(S(body), "code"), 1);
}


static void
test_form_absent_name_is_declined(void **state)
{
    char    v[16];
    size_t  n;

    (void) state;

    strcpy(v, "untouched");

    assert_int_equal(vetting_form_get(S("client_idx=1&xclient_id=2"
                                        "&client=3&client_id2=4"),
                                      "client_id", v, sizeof(v), &n),
                     VETTING_DECLINED);
    assert_string_equal(v, "");
    assert_int_equal(n, 0);

    assert_int_equal(vetting_form_get(S(""), "client_id", v, sizeof(v), &n),
                     VETTING_DECLINED);
    assert_int_equal(vetting_form_has(S("a=1&b=2"), "c"), 0);
    assert_int_equal(vetting_form_has(S("&&&"), "c"), 0);
    assert_int_equal(vetting_form_has(S(""), "c"), 0);
}


static void
test_form_repeated_name_is_an_error(void **state)
{
    char    v[16];
    size_t  n;

    (void) state;

    assert_int_equal(vetting_form_get(S("client_id=a&client_id=b"),
                                      "client_id", v, sizeof(v), &n),
                     VETTING_ERROR);
    assert_string_equal(v, "");

    assert_int_equal(vetting_form_get(S("client_id=a&client_id=a"),
                                      "client_id", v, sizeof(v), &n),
                     VETTING_ERROR);

    /* the same name, spelled two ways */
    assert_int_equal(vetting_form_get(S("client_id=a&client%5Fid=b"),
                                      "client_id", v, sizeof(v), &n),
                     VETTING_ERROR);

    /* has() only says that it occurs */
    assert_int_equal(vetting_form_has(S("code=1&x=2&code"), "code"), 1);
}


static void
test_form_names_are_decoded_and_exact(void **state)
{
    char    v[16];
    size_t  n;

    (void) state;

    assert_int_equal(vetting_form_get(S("client%5Fid=x"), "client_id", v,
                                      sizeof(v), &n),
                     VETTING_OK);
    assert_string_equal(v, "x");

    assert_int_equal(vetting_form_get(S("Client_id=x"), "client_id", v,
                                      sizeof(v), &n),
                     VETTING_DECLINED);

    assert_int_equal(vetting_form_get(S("a+b=x"), "a b", v, sizeof(v), &n),
                     VETTING_OK);
    assert_string_equal(v, "x");

    /* a badly encoded other name does not spoil the lookup */
    assert_int_equal(vetting_form_get(S("x%zz=1&client_id=a&y%4=2"),
                                      "client_id", v, sizeof(v), &n),
                     VETTING_OK);
    assert_string_equal(v, "a");

    assert_int_equal(vetting_form_get(S("client_id%=1"), "client_id", v,
                                      sizeof(v), &n),
                     VETTING_DECLINED);
}


static void
test_form_empty_values(void **state)
{
    char    v[16];
    size_t  n;

    (void) state;

    strcpy(v, "untouched");
    assert_int_equal(vetting_form_get(S("client_id&x=1"), "client_id", v,
                                      sizeof(v), &n),
                     VETTING_OK);
    assert_string_equal(v, "");
    assert_int_equal(n, 0);

    assert_int_equal(vetting_form_get(S("x=1&client_id="), "client_id", v,
                                      sizeof(v), &n),
                     VETTING_OK);
    assert_string_equal(v, "");

    assert_int_equal(vetting_form_get(S("&&client_id=a=b&&"), "client_id", v,
                                      sizeof(v), &n),
                     VETTING_OK);
    assert_string_equal(v, "a=b");
}


static void
test_form_bad_values_are_errors(void **state)
{
    char    v[8];
    size_t  i, n;

    static const char  *bad[] = {
        "client_id=a%zz",
        "client_id=a%4",
        "client_id=a%",
        "client_id=%%41",
        "client_id=a%00b",
        "client_id=12345678",
        NULL
    };

    (void) state;

    for (i = 0; bad[i] != NULL; i++) {
        strcpy(v, "abc");
        assert_int_equal(vetting_form_get(S(bad[i]), "client_id", v,
                                          sizeof(v), &n),
                         VETTING_ERROR);
        assert_string_equal(v, "");
        assert_int_equal(n, 0);
    }

    assert_int_equal(vetting_form_has(S("client_id=a%zz"), "client_id"), 1);

    /* seven bytes and the NUL fit */
    assert_int_equal(vetting_form_get(S("client_id=1234567"), "client_id", v,
                                      sizeof(v), &n),
                     VETTING_OK);
    assert_string_equal(v, "1234567");

    assert_int_equal(vetting_form_get(S("client_id=1234567"), "client_id", v,
                                      0, &n),
                     VETTING_ERROR);

    /* a long value only checked */
    assert_int_equal(vetting_form_has(S("client_id=123456789012345"),
                                      "client_id"),
                     1);
}


static void
test_form_on_a_query_string(void **state)
{
    (void) state;

    assert_int_equal(vetting_form_has(S("_getpages=0f8c2a&_getpagesoffset=50"
                                        "&_count=50&_bundletype=searchset"),
                                      "_getpages"),
                     1);
    assert_int_equal(vetting_form_has(S("_getpagesoffset=50"), "_getpages"),
                     0);
    assert_int_equal(vetting_form_has(S("x=1&%5Fmethod=PUT"), "_method"), 1);
    assert_int_equal(vetting_form_has(S("_method"), "_method"), 1);
    assert_int_equal(vetting_form_has(S("_Method=PUT"), "_method"), 0);
}


static void
test_jwt_issuer_is_found(void **state)
{
    char    id[VETTING_APP_MAX + 1];
    size_t  n;

    (void) state;

    assert_int_equal(vetting_jwt_issuer(S(jwt("{\"iss\":\"app-7f3c\","
                                              "\"sub\":\"app-7f3c\","
                                              "\"aud\":\"https://as/token\","
                                              "\"exp\":1700000300,"
                                              "\"jti\":\"r4nd0m\"}")),
                                        id, sizeof(id), &n),
                     VETTING_OK);
    assert_string_equal(id, "app-7f3c");
    assert_int_equal(n, 8);

    /* no sub; the escape is decoded; nested iss members do not count */
    assert_int_equal(vetting_jwt_issuer(S(jwt("{\"cnf\":{\"iss\":\"x\"},"
                                              "\"iss\":\"app\\u002d1\","
                                              "\"x\":[{\"sub\":\"y\"}]}")),
                                        id, sizeof(id), &n),
                     VETTING_OK);
    assert_string_equal(id, "app-1");

    /* an empty signature is the server's business */
    assert_int_equal(vetting_jwt_issuer(S("eyJhbGciOiJub25lIn0."
                                          "eyJpc3MiOiJhIn0."),
                                        id, sizeof(id), &n),
                     VETTING_OK);
    assert_string_equal(id, "a");
}


static void
test_jwt_issuer_may_overwrite_the_assertion(void **state)
{
    char    buf[1024];
    size_t  n;

    (void) state;

    strcpy(buf, jwt("{\"iss\":\"app-7f3c\",\"sub\":\"app-7f3c\"}"));

    assert_int_equal(vetting_jwt_issuer((unsigned char *) buf, strlen(buf),
                                        buf, VETTING_APP_MAX + 1, &n),
                     VETTING_OK);
    assert_string_equal(buf, "app-7f3c");
    assert_int_equal(n, 8);

    strcpy(buf, jwt("{\"iss\":\"app-1\",\"sub\":\"app-2\"}"));

    assert_int_equal(vetting_jwt_issuer((unsigned char *) buf, strlen(buf),
                                        buf, VETTING_APP_MAX + 1, &n),
                     VETTING_ERROR);
    assert_string_equal(buf, "");
}


static void
test_jwt_bad_claims_are_errors(void **state)
{
    char    id[16];
    size_t  i, n;

    static const char  *bad[] = {
        "{\"iss\":\"app-1\",\"sub\":\"app-2\"}",
        "{\"iss\":\"app-1\",\"sub\":\"app-1 \"}",
        "{\"iss\":\"app-1\",\"sub\":null}",
        "{\"iss\":\"app-1\",\"sub\":{\"a\":1}}",
        "{\"sub\":\"app-1\"}",
        "{}",
        "{\"iss\":42}",
        "{\"iss\":null}",
        "{\"iss\":[\"app-1\"]}",
        "{\"iss\":{}}",
        "{\"iss\":\"\"}",
        "{\"iss\":\"my app\"}",
        "{\"iss\":\"a\\\"b\"}",
        "{\"iss\":\"app-1\",\"iss\":\"app-2\"}",
        "{\"iss\":\"app-1\",\"sub\":\"app-1\",\"sub\":\"app-2\"}",
        "{\"iss\":\"0123456789abcdef\"}",
        "[{\"iss\":\"app-1\"}]",
        "\"app-1\"",
        "not json",
        "{\"iss\":\"app-1\"",
        "{\"iss\":\"app-1\"} x",
        NULL
    };

    (void) state;

    for (i = 0; bad[i] != NULL; i++) {
        strcpy(id, "untouched");
        n = 99;

        assert_int_equal(vetting_jwt_issuer(S(jwt(bad[i])), id, sizeof(id),
                                            &n),
                         VETTING_ERROR);
        assert_string_equal(id, "");
        assert_int_equal(n, 0);
    }

    /* fifteen characters fit in sixteen bytes */
    assert_int_equal(vetting_jwt_issuer(S(jwt("{\"iss\":\"0123456789abcde\"}")),
                                        id, sizeof(id), &n),
                     VETTING_OK);
    assert_int_equal(n, 15);
}


static void
test_jwt_bad_shapes_are_errors(void **state)
{
    char    id[16];
    size_t  i, n;

    static const char  *bad[] = {
        "",
        "abc",
        "eyJhbGciOiJub25lIn0.eyJpc3MiOiJhIn0",
        "eyJhbGciOiJub25lIn0.eyJpc3MiOiJhIn0.c2ln.c2ln",
        ".eyJpc3MiOiJhIn0.c2ln",
        "eyJhbGciOiJub25lIn0..c2ln",
        "eyJhbGciOiJub25lIn0.eyJpc3MiOiJhIn0=.c2ln",
        "eyJhbGciOiJub25lIn0.eyJpc3MiOiJhIn0.c2ln=",
        "eyJhbGciOiJub25lIn0.eyJpc3MiOi+hIn0.c2ln",
        "eyJhbGciOiJub25lIn0.eyJpc3MiOiJhIn0x.c2ln",
        "eyJhbGciOiJub25lIn0.eyJpc3MiOiJhIn1.c2ln",
        "eyJhbG ciOiJub25lIn0.eyJpc3MiOiJhIn0.c2ln",
        NULL
    };

    (void) state;

    for (i = 0; bad[i] != NULL; i++) {
        assert_int_equal(vetting_jwt_issuer(S(bad[i]), id, sizeof(id), &n),
                         VETTING_ERROR);
    }
}


static void
test_jwt_payload_is_bounded(void **state)
{
    char    *json, id[16];
    size_t   n, i;

    (void) state;

    /* over 8 KiB of base64url */

    json = malloc(8192);
    assert_non_null(json);

    n = sprintf(json, "{\"iss\":\"a\",\"pad\":\"");
    memset(json + n, 'x', 6200);
    strcpy(json + n + 6200, "\"}");

    assert_int_equal(vetting_jwt_issuer(S(jwt(json)), id, sizeof(id), &n),
                     VETTING_ERROR);

    /* deep nesting */

    n = sprintf(json, "{\"iss\":\"a\",\"x\":");

    for (i = 0; i < 100; i++) {
        json[n++] = '[';
    }

    for (i = 0; i < 100; i++) {
        json[n++] = ']';
    }

    strcpy(json + n, "}");

    assert_int_equal(vetting_jwt_issuer(S(jwt(json)), id, sizeof(id), &n),
                     VETTING_ERROR);

    free(json);
}


typedef struct {
    const char                  *method;
    const char                  *path;
    const char                  *query;
    vetting_fhir_interaction_e   interaction;
    char                         action;
    unsigned                     write;
    unsigned                     bad_method;
    unsigned                     needs_body;
    const char                  *type;
    const char                  *id;
    const char                  *operation;
} classify_case_t;


static void
check_classify(const classify_case_t *c, const char *reads)
{
    vetting_fhir_request_t  req;

    vetting_fhir_classify(c->method, strlen(c->method), S(c->path),
                          S(c->query), reads, &req);

    if (req.interaction != c->interaction || req.action != c->action
        || req.write != c->write || req.bad_method != c->bad_method
        || req.needs_body != c->needs_body)
    {
        fail_msg("%s \"%s\" ?%s: interaction %d action %c write %u"
                 " bad_method %u needs_body %u", c->method, c->path,
                 c->query, req.interaction, req.action, req.write,
                 req.bad_method, req.needs_body);
    }

    assert_int_equal(req.type.len, strlen(c->type));
    assert_memory_equal(req.type.data == NULL ? (unsigned char *) ""
                                              : req.type.data,
                        c->type, req.type.len);
    assert_int_equal(req.id.len, strlen(c->id));
    assert_memory_equal(req.id.data == NULL ? (unsigned char *) ""
                                            : req.id.data,
                        c->id, req.id.len);
    assert_int_equal(req.operation.len, strlen(c->operation));
    assert_memory_equal(req.operation.data == NULL ? (unsigned char *) ""
                                                   : req.operation.data,
                        c->operation, req.operation.len);

    /* pointers into the path given */
    if (req.type.len) {
        assert_true(req.type.data >= (unsigned char *) c->path);
        assert_true(req.type.data + req.type.len
                    <= (unsigned char *) c->path + strlen(c->path));
    }
}


static void
test_classify_reads(void **state)
{
    size_t  i;

    static const classify_case_t  cases[] = {
        { "GET", "/Patient/m-12345", "",
          VETTING_FHIR_READ, 'R', 0, 0, 0, "Patient", "m-12345", "" },
        { "HEAD", "/Patient/m-12345", "",
          VETTING_FHIR_READ, 'R', 0, 0, 0, "Patient", "m-12345", "" },
        { "GET", "/ExplanationOfBenefit/eob-98765/", "",
          VETTING_FHIR_READ, 'R', 0, 0, 0, "ExplanationOfBenefit",
          "eob-98765", "" },
        { "GET", "/Patient/123/_history/2", "",
          VETTING_FHIR_VREAD, 'R', 0, 0, 0, "Patient", "123", "" },
        { "GET", "/Patient/123/_history", "",
          VETTING_FHIR_HISTORY, 'R', 0, 0, 0, "Patient", "123", "" },
        { "GET", "/Patient/_history", "_since=2025-01-01",
          VETTING_FHIR_HISTORY, 'R', 0, 0, 0, "Patient", "", "" },
        { "GET", "/_history", "",
          VETTING_FHIR_HISTORY, 'R', 0, 0, 0, "", "", "" },
        { "GET", "/ExplanationOfBenefit", "patient=m-12345&_count=50",
          VETTING_FHIR_SEARCH_TYPE, 'E', 0, 0, 0, "ExplanationOfBenefit",
          "", "" },
        { "GET", "", "_getpages=0f8c2a&_getpagesoffset=50",
          VETTING_FHIR_SEARCH_SYSTEM, 'E', 0, 0, 0, "", "", "" },
        { "GET", "/", "_type=Patient",
          VETTING_FHIR_SEARCH_SYSTEM, 'E', 0, 0, 0, "", "", "" },
        { "GET", "/metadata", "",
          VETTING_FHIR_CAPABILITIES, 'E', 0, 0, 0, "", "", "" },
        { "GET", "/Patient/m-12345/$everything", "_count=100",
          VETTING_FHIR_OPERATION, 'E', 0, 0, 0, "Patient", "m-12345",
          "everything" },
        { "GET", "/$export", "",
          VETTING_FHIR_OPERATION, 'E', 0, 0, 0, "", "", "export" },
        { "GET", "/Patient/$export", "",
          VETTING_FHIR_OPERATION, 'E', 0, 0, 0, "Patient", "", "export" },
        { "GET", "/Patient/123/ExplanationOfBenefit", "",
          VETTING_FHIR_SEARCH_COMPARTMENT, 'E', 0, 0, 0, "Patient", "123",
          "" },
        { "GET", "/Patient/123/*", "",
          VETTING_FHIR_SEARCH_COMPARTMENT, 'E', 0, 0, 0, "Patient", "123",
          "" },
        { "OPTIONS", "/Patient/123", "",
          VETTING_FHIR_OPTIONS, 'E', 0, 0, 0, "Patient", "123", "" },
        { "OPTIONS", "", "",
          VETTING_FHIR_OPTIONS, 'E', 0, 0, 0, "", "", "" },
        { "GET", "/.well-known/smart-configuration", "",
          VETTING_FHIR_UNKNOWN, 'R', 0, 0, 0, "", "", "" },
        { "GET", "/Patient/..", "",
          VETTING_FHIR_UNKNOWN, 'R', 0, 0, 0, "Patient", "", "" },
        { "GET", "/Patient//123", "",
          VETTING_FHIR_UNKNOWN, 'R', 0, 0, 0, "", "", "" },
        { "GET", "/Patient/a b", "",
          VETTING_FHIR_UNKNOWN, 'R', 0, 0, 0, "Patient", "", "" },
        { "GET", "/patient/123", "",
          VETTING_FHIR_UNKNOWN, 'R', 0, 0, 0, "", "", "" },
        { "GET", "/Patient/1/Coverage/2/x", "",
          VETTING_FHIR_UNKNOWN, 'R', 0, 0, 0, "", "", "" },
    };

    (void) state;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        check_classify(&cases[i], NULL);
    }
}


static void
test_classify_post_searches_are_reads(void **state)
{
    size_t  i;

    static const classify_case_t  cases[] = {
        { "POST", "/ExplanationOfBenefit/_search", "",
          VETTING_FHIR_SEARCH_TYPE, 'E', 0, 0, 0, "ExplanationOfBenefit",
          "", "" },
        { "POST", "/_search", "",
          VETTING_FHIR_SEARCH_SYSTEM, 'E', 0, 0, 0, "", "", "" },
        { "POST", "/Patient/123/ExplanationOfBenefit/_search", "",
          VETTING_FHIR_SEARCH_COMPARTMENT, 'E', 0, 0, 0, "Patient", "123",
          "" },
        { "POST", "", "_getpages=0f8c2a&_getpagesoffset=50",
          VETTING_FHIR_SEARCH_SYSTEM, 'E', 0, 0, 0, "", "", "" },
        { "POST", "/Patient/123/$everything", "",
          VETTING_FHIR_OPERATION, 'E', 0, 0, 0, "Patient", "123",
          "everything" },
    };

    (void) state;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        check_classify(&cases[i], "export\0everything\0");
    }
}


static void
test_classify_writes(void **state)
{
    size_t  i;

    static const classify_case_t  cases[] = {
        { "POST", "/Observation", "",
          VETTING_FHIR_CREATE, 'C', 1, 0, 0, "Observation", "", "" },
        { "POST", "/Patient/123", "",
          VETTING_FHIR_CREATE, 'C', 1, 0, 0, "Patient", "123", "" },
        { "POST", "/Patient/123/_search", "",
          VETTING_FHIR_CREATE, 'C', 1, 0, 0, "Patient", "123", "" },
        { "POST", "/metadata", "",
          VETTING_FHIR_CREATE, 'C', 1, 0, 0, "", "", "" },
        { "PUT", "/Patient/m-12345", "",
          VETTING_FHIR_UPDATE, 'U', 1, 0, 0, "Patient", "m-12345", "" },
        { "PUT", "/Patient", "identifier=x",
          VETTING_FHIR_UPDATE, 'U', 1, 0, 0, "Patient", "", "" },
        { "PATCH", "/Coverage/cov-1", "",
          VETTING_FHIR_PATCH, 'U', 1, 0, 0, "Coverage", "cov-1", "" },
        { "DELETE", "/ExplanationOfBenefit/eob-98765", "",
          VETTING_FHIR_DELETE, 'D', 1, 0, 0, "ExplanationOfBenefit",
          "eob-98765", "" },
        { "DELETE", "/Observation", "patient=m-12345",
          VETTING_FHIR_DELETE, 'D', 1, 0, 0, "Observation", "", "" },
        { "POST", "", "",
          VETTING_FHIR_BATCH, 'E', 1, 0, 1, "", "", "" },
        { "POST", "/", "_format=json",
          VETTING_FHIR_BATCH, 'E', 1, 0, 1, "", "", "" },
        { "POST", "/", "_getpages=a&_getpages=b",
          VETTING_FHIR_BATCH, 'E', 1, 0, 1, "", "", "" },
        { "POST", "/Patient/123/$everything", "",
          VETTING_FHIR_OPERATION, 'E', 1, 0, 0, "Patient", "123",
          "everything" },
        { "POST", "/$export", "",
          VETTING_FHIR_OPERATION, 'E', 1, 0, 0, "", "", "export" },
        { "POST", "/Patient/$validate", "",
          VETTING_FHIR_OPERATION, 'E', 1, 0, 0, "Patient", "", "validate" },
    };

    (void) state;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        check_classify(&cases[i], NULL);
    }

    /* listed reads are names, matched whole */
    check_classify(&cases[12], "every\0everythin\0");
    check_classify(&cases[14], "everything\0");
}


static void
test_classify_bad_methods(void **state)
{
    size_t  i;

    static const classify_case_t  cases[] = {
        { "PROPFIND", "/Patient/1", "",
          VETTING_FHIR_UNKNOWN, 'E', 1, 1, 0, "Patient", "1", "" },
        { "MKCOL", "/Patient", "",
          VETTING_FHIR_UNKNOWN, 'E', 1, 1, 0, "Patient", "", "" },
        { "COPY", "/Patient/1", "",
          VETTING_FHIR_UNKNOWN, 'E', 1, 1, 0, "Patient", "1", "" },
        { "MOVE", "/Patient/1", "",
          VETTING_FHIR_UNKNOWN, 'E', 1, 1, 0, "Patient", "1", "" },
        { "LOCK", "/Patient/1", "",
          VETTING_FHIR_UNKNOWN, 'E', 1, 1, 0, "Patient", "1", "" },
        { "UNLOCK", "/Patient/1", "",
          VETTING_FHIR_UNKNOWN, 'E', 1, 1, 0, "Patient", "1", "" },
        { "PROPPATCH", "/Patient/1", "",
          VETTING_FHIR_UNKNOWN, 'E', 1, 1, 0, "Patient", "1", "" },
        { "TRACE", "/", "",
          VETTING_FHIR_UNKNOWN, 'E', 1, 1, 0, "", "", "" },
        { "CONNECT", "/", "",
          VETTING_FHIR_UNKNOWN, 'E', 1, 1, 0, "", "", "" },
        { "get", "/Patient/1", "",
          VETTING_FHIR_UNKNOWN, 'E', 1, 1, 0, "Patient", "1", "" },
        { "Post", "/_search", "",
          VETTING_FHIR_UNKNOWN, 'E', 1, 1, 0, "", "", "" },
        { "GETS", "/Patient/1", "",
          VETTING_FHIR_UNKNOWN, 'E', 1, 1, 0, "Patient", "1", "" },
        { "", "/Patient/1", "",
          VETTING_FHIR_UNKNOWN, 'E', 1, 1, 0, "Patient", "1", "" },
    };

    (void) state;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        check_classify(&cases[i], NULL);
    }
}


static void
test_classify_uses_the_method_length(void **state)
{
    vetting_fhir_request_t  req;

    (void) state;

    /* "GETX" cut to three bytes is GET, "GE" is not */

    vetting_fhir_classify("GETX", 3, S("/Patient/1"), S(""), NULL, &req);
    assert_int_equal(req.interaction, VETTING_FHIR_READ);
    assert_false(req.write);

    vetting_fhir_classify("GETX", 2, S("/Patient/1"), S(""), NULL, &req);
    assert_true(req.bad_method);
    assert_true(req.write);
}


static void
test_bundle_of_reads(void **state)
{
    (void) state;

    assert_int_equal(vetting_bundle_reads_only(S(
        "{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":["
        "{\"request\":{\"method\":\"GET\",\"url\":\"Patient/m-12345\"}},"
        "{\"fullUrl\":\"urn:uuid:1\",\"request\":{\"url\":\"Coverage\","
        "\"method\":\"HEAD\"}},"
        "{\"resource\":{\"resourceType\":\"Bundle\",\"type\":\"batch\","
        "\"entry\":[{\"request\":{\"method\":\"DELETE\"}}]},"
        "\"request\":{\"method\":\"GET\",\"url\":\"Observation\"}}]}"), 10),
        VETTING_OK);

    assert_int_equal(vetting_bundle_reads_only(S(
        "{\"type\":\"batch\",\"resourceType\":\"Bundle\"}"), 10),
        VETTING_OK);

    assert_int_equal(vetting_bundle_reads_only(S(
        "{\"type\":\"batch\",\"entry\":[],\"resourceType\":\"Bundle\"}"), 0),
        VETTING_OK);
}


static void
test_bundle_with_a_write_is_declined(void **state)
{
    size_t  i;

    static const char  *declined[] = {
        "{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":["
        "{\"request\":{\"method\":\"GET\"}},"
        "{\"request\":{\"method\":\"POST\",\"url\":\"Observation\"}}]}",

        "{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":["
        "{\"request\":{\"method\":\"get\"}}]}",

        "{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":["
        "{\"request\":{\"method\":\"PATCH\"}}]}",

        "{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":["
        "{\"request\":{\"method\":\"GET\"}}]}",

        "{\"resourceType\":\"Bundle\",\"type\":\"searchset\"}",

        NULL
    };

    (void) state;

    for (i = 0; declined[i] != NULL; i++) {
        assert_int_equal(vetting_bundle_reads_only(S(declined[i]), 10),
                         VETTING_DECLINED);
    }
}


static void
test_bundle_malformed_is_an_error(void **state)
{
    size_t  i;

    static const char  *bad[] = {
        "",
        "not json",
        "[]",
        "\"Bundle\"",
        "{\"resourceType\":\"Patient\",\"type\":\"batch\"}",
        "{\"type\":\"batch\"}",
        "{\"resourceType\":\"Bundle\"}",
        "{\"resourceType\":\"Bundle\",\"type\":null}",
        "{\"resourceType\":[\"Bundle\"],\"type\":\"batch\"}",
        "{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":{}}",
        "{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":[1]}",
        "{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":[[]]}",
        "{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":[{}]}",
        "{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":["
        "{\"request\":{}}]}",
        "{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":["
        "{\"request\":[]}]}",
        "{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":["
        "{\"request\":{\"method\":1}}]}",
        "{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":["
        "{\"request\":{\"method\":\"GET\",\"method\":\"POST\"}}]}",
        "{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":["
        "{\"request\":{\"method\":\"GET\"},\"request\":{}}]}",
        "{\"resourceType\":\"Bundle\",\"type\":\"batch\","
        "\"type\":\"transaction\"}",
        "{\"resourceType\":\"Bundle\",\"resourceType\":\"Bundle\","
        "\"type\":\"batch\"}",
        "{\"resourceType\":\"Bundle\",\"type\":\"batch\",\"entry\":[],"
        "\"entry\":[]}",
        "{\"resourceType\":\"Bundle\",\"type\":\"batch\"",
        "{\"resourceType\":\"Bundle\",\"type\":\"batch\"}}",
        "{\"resourceType\":\"Bundle\",\"type\":\"batch\"} {}",
        NULL
    };

    (void) state;

    for (i = 0; bad[i] != NULL; i++) {
        if (vetting_bundle_reads_only(S(bad[i]), 10) != VETTING_ERROR) {
            fail_msg("not an error: %s", bad[i]);
        }
    }
}


static void
test_bundle_limits(void **state)
{
    char    *buf;
    size_t   n, i;

    static const char  entry[] = "{\"request\":{\"method\":\"GET\"}},";

    (void) state;

    buf = malloc(VETTING_BUNDLE_MAX + 16);
    assert_non_null(buf);

    /* max_entries entries pass, one more does not */

    n = sprintf(buf, "{\"resourceType\":\"Bundle\",\"type\":\"batch\","
                "\"entry\":[");

    for (i = 0; i < 3; i++) {
        memcpy(buf + n, entry, sizeof(entry) - 1);
        n += sizeof(entry) - 1;
    }

    strcpy(buf + n - 1, "]}");

    assert_int_equal(vetting_bundle_reads_only(S(buf), 3), VETTING_OK);
    assert_int_equal(vetting_bundle_reads_only(S(buf), 2), VETTING_ERROR);

    /* nesting */

    n = sprintf(buf, "{\"resourceType\":\"Bundle\",\"type\":\"batch\","
                "\"meta\":");

    for (i = 0; i < 100000; i++) {
        buf[n++] = '[';
    }

    buf[n] = '\0';

    assert_int_equal(vetting_bundle_reads_only(S(buf), 3), VETTING_ERROR);

    /* size */

    n = sprintf(buf, "{\"resourceType\":\"Bundle\",\"type\":\"batch\","
                "\"id\":\"");
    memset(buf + n, 'x', VETTING_BUNDLE_MAX - n - 2);
    strcpy(buf + VETTING_BUNDLE_MAX - 2, "\"}");

    assert_int_equal(strlen(buf), VETTING_BUNDLE_MAX);
    assert_int_equal(vetting_bundle_reads_only(S(buf), 3), VETTING_OK);

    memmove(buf + 1, buf, VETTING_BUNDLE_MAX + 1);
    buf[0] = ' ';
    assert_int_equal(vetting_bundle_reads_only(S(buf), 3), VETTING_ERROR);

    free(buf);
}


static void
test_redact_query(void **state)
{
    size_t  i, n;
    char    out[256];

    static const struct {
        const char  *in;
        const char  *out;
    } cases[] = {
        { "code=SplxlOBe&state=5ca1ab1e",
          "code=redacted&state=5ca1ab1e" },
        { "patient=m-12345&_count=50", "patient=m-12345&_count=50" },
        { "access_token=abc&_count=50", "access_token=redacted&_count=50" },
        { "refresh_token=a&id_token=b&code_verifier=c&client_secret=d"
          "&client_assertion=e&password=f&token=g&jwt=h&assertion=i",
          "refresh_token=redacted&id_token=redacted&code_verifier=redacted"
          "&client_secret=redacted&client_assertion=redacted"
          "&password=redacted&token=redacted&jwt=redacted"
          "&assertion=redacted" },
        { "subject_token=a&my_secret=b&clientsecret=c&x_token_y=d",
          "subject_token=redacted&my_secret=redacted&clientsecret=redacted"
          "&x_token_y=d" },
        { "%61ccess_token=abc", "%61ccess_token=redacted" },
        { "access%5Ftoken=abc", "access%5Ftoken=redacted" },
        { "Code=abc&ACCESS_TOKEN=x", "Code=redacted&ACCESS_TOKEN=redacted" },
        { "code%zz=abc", "code%zz=redacted" },
        { "x%=abc", "x%=redacted" },
        { "code", "code" },
        { "code=", "code=redacted" },
        { "=abc", "=abc" },
        { "a=1;code=x", "a=1;code=redacted" },
        { "&&code=x&&", "&&code=redacted&&" },
        { "code=a=b&b=c=d", "code=redacted&b=c=d" },
        { "codes=1&xcode=2", "codes=1&xcode=2" },
        { "", "" },
    };

    (void) state;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        n = vetting_redact_query(S(cases[i].in), out, sizeof(out));
        assert_string_equal(out, cases[i].out);
        assert_int_equal(n, strlen(cases[i].out));
    }
}


static void
test_redact_query_truncates(void **state)
{
    char    out[10], name[400];
    size_t  n;

    (void) state;

    n = vetting_redact_query(S("patient=m-12345&code=abc"), out, sizeof(out));
    assert_int_equal(n, 9);
    assert_string_equal(out, "patient=m");

    n = vetting_redact_query(S("code=abcdefgh"), out, sizeof(out));
    assert_string_equal(out, "code=reda");

    strcpy(out, "untouched");
    assert_int_equal(vetting_redact_query(S("a=1"), out, 0), 0);
    assert_string_equal(out, "untouched");

    assert_int_equal(vetting_redact_query(S("a=1"), out, 1), 0);
    assert_string_equal(out, "");

    /* a name too long to compare is taken for a secret */

    memset(name, 'n', 300);
    strcpy(name + 300, "=v");
    assert_int_equal(vetting_redact_query(S(name), out, sizeof(out)), 9);

    {
        char  big[512];

        vetting_redact_query(S(name), big, sizeof(big));
        assert_string_equal(big + 300, "=redacted");
    }
}


static void
test_override_headers(void **state)
{
    (void) state;

    assert_true(vetting_is_override_header(S("X-HTTP-Method-Override")));
    assert_true(vetting_is_override_header(S("x-http-method-override")));
    assert_true(vetting_is_override_header(S("X-HTTP-Method")));
    assert_true(vetting_is_override_header(S("X-METHOD-OVERRIDE")));
    assert_false(vetting_is_override_header(S("X-HTTP-Method-Overrid")));
    assert_false(vetting_is_override_header(S("X-HTTP-Method-Override2")));
    assert_false(vetting_is_override_header(S("X-Forwarded-For")));
    assert_false(vetting_is_override_header(S("")));
    assert_false(vetting_is_override_header(
                     (unsigned char *) "X-HTTP-Method\0", 14));
}


static void
test_fhir_id_valid(void **state)
{
    (void) state;

    assert_true(vetting_fhir_id_valid(S("m-12345")));
    assert_true(vetting_fhir_id_valid(S("a.b-C9")));
    assert_true(vetting_fhir_id_valid(S(
        "0123456789012345678901234567890123456789012345678901234567890123")));
    assert_false(vetting_fhir_id_valid(S(
        "01234567890123456789012345678901234567890123456789012345678901234")));
    assert_false(vetting_fhir_id_valid(S("")));
    assert_false(vetting_fhir_id_valid(S("a_b")));
    assert_false(vetting_fhir_id_valid(S("a b")));
    assert_false(vetting_fhir_id_valid(S("a/b")));
    assert_false(vetting_fhir_id_valid((unsigned char *) "a\0b", 3));
}


static void
test_client_id_valid(void **state)
{
    char  id[VETTING_APP_MAX + 2];

    (void) state;

    assert_true(vetting_client_id_valid(S("app-7f3c")));
    assert_true(vetting_client_id_valid(S("urn:app:7f3c/x?y=z&!#$%()*+,;<>")));

    memset(id, 'a', sizeof(id));
    assert_true(vetting_client_id_valid((unsigned char *) id,
                                        VETTING_APP_MAX));
    assert_false(vetting_client_id_valid((unsigned char *) id,
                                         VETTING_APP_MAX + 1));

    assert_false(vetting_client_id_valid(S("")));
    assert_false(vetting_client_id_valid(S("a b")));
    assert_false(vetting_client_id_valid(S("a\"b")));
    assert_false(vetting_client_id_valid(S("a'b")));
    assert_false(vetting_client_id_valid(S("a\\b")));
    assert_false(vetting_client_id_valid(S("a\x7f")));
    assert_false(vetting_client_id_valid(S("a\tb")));
    assert_false(vetting_client_id_valid(S("caf\xc3\xa9")));
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_bearer_token_is_found),
        cmocka_unit_test(test_bearer_other_scheme_is_declined),
        cmocka_unit_test(test_bearer_malformed_is_an_error),
        cmocka_unit_test(test_bearer_longer_than_the_maximum_is_an_error),
        cmocka_unit_test(test_basic_client_id_is_decoded),
        cmocka_unit_test(test_basic_client_id_is_form_url_decoded),
        cmocka_unit_test(test_basic_padding_is_optional),
        cmocka_unit_test(test_basic_malformed_base64_is_an_error),
        cmocka_unit_test(test_basic_bad_client_ids_are_errors),
        cmocka_unit_test(test_basic_secret_is_never_copied),
        cmocka_unit_test(test_basic_other_scheme_is_declined),
        cmocka_unit_test(test_form_value_is_decoded),
        cmocka_unit_test(test_form_absent_name_is_declined),
        cmocka_unit_test(test_form_repeated_name_is_an_error),
        cmocka_unit_test(test_form_names_are_decoded_and_exact),
        cmocka_unit_test(test_form_empty_values),
        cmocka_unit_test(test_form_bad_values_are_errors),
        cmocka_unit_test(test_form_on_a_query_string),
        cmocka_unit_test(test_jwt_issuer_is_found),
        cmocka_unit_test(test_jwt_issuer_may_overwrite_the_assertion),
        cmocka_unit_test(test_jwt_bad_claims_are_errors),
        cmocka_unit_test(test_jwt_bad_shapes_are_errors),
        cmocka_unit_test(test_jwt_payload_is_bounded),
        cmocka_unit_test(test_classify_reads),
        cmocka_unit_test(test_classify_post_searches_are_reads),
        cmocka_unit_test(test_classify_writes),
        cmocka_unit_test(test_classify_bad_methods),
        cmocka_unit_test(test_classify_uses_the_method_length),
        cmocka_unit_test(test_bundle_of_reads),
        cmocka_unit_test(test_bundle_with_a_write_is_declined),
        cmocka_unit_test(test_bundle_malformed_is_an_error),
        cmocka_unit_test(test_bundle_limits),
        cmocka_unit_test(test_redact_query),
        cmocka_unit_test(test_redact_query_truncates),
        cmocka_unit_test(test_override_headers),
        cmocka_unit_test(test_fhir_id_valid),
        cmocka_unit_test(test_client_id_valid),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
