
/*
 * Copyright (C) ngx_vetting_module authors
 *
 * Unit tests for vetting_resp.c: the capped hiredis reader, command
 * formatting and the reply helpers.
 */


#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "vetting_resp.h"


#if defined(__has_feature)
#if __has_feature(address_sanitizer) && !defined(__SANITIZE_ADDRESS__)
#define __SANITIZE_ADDRESS__  1
#endif
#endif


#define ELEMENTS  16
#define DEPTH     3
#define BULK      64


#ifdef __SANITIZE_ADDRESS__

/* the allocator hook of the sanitizers (sanitizer/allocator_interface.h) */
int __sanitizer_install_malloc_and_free_hooks(
    void (*malloc_hook)(const volatile void *, size_t),
    void (*free_hook)(const volatile void *));

static size_t  largest;


static void
on_malloc(const volatile void *p, size_t size)
{
    (void) p;

    if (size > largest) {
        largest = size;
    }
}


static void
on_free(const volatile void *p)
{
    (void) p;
}

#endif


static redisReader *
reader(void)
{
    redisReader  *r;

    r = vetting_resp_reader_create(ELEMENTS, DEPTH, BULK);
    assert_non_null(r);

    return r;
}


/* feeds s whole and takes one reply, which must be there */

static redisReply *
one(redisReader *r, const char *s, size_t len)
{
    redisReply  *reply;

    assert_int_equal(vetting_resp_feed(r, s, len), VETTING_OK);
    assert_int_equal(vetting_resp_next(r, &reply), VETTING_OK);
    assert_non_null(reply);

    return reply;
}


/* feeds s whole and expects the reader to fail on it */

static void
refused(redisReader *r, const char *s, size_t len)
{
    int          rc;
    redisReply  *reply;

    rc = vetting_resp_feed(r, s, len);

    if (rc == VETTING_OK) {
        rc = vetting_resp_next(r, &reply);
        assert_null(reply);
    }

    assert_int_equal(rc, VETTING_ERROR);

    /* and it stays failed */

    assert_int_equal(vetting_resp_feed(r, "+OK\r\n", 5), VETTING_ERROR);
    assert_int_equal(vetting_resp_next(r, &reply), VETTING_ERROR);
    assert_null(reply);
}


static void
test_status_error_integer(void **state)
{
    redisReply   *reply;
    redisReader  *r;

    (void) state;

    r = reader();

    reply = one(r, "+OK\r\n", 5);
    assert_int_equal(reply->type, REDIS_REPLY_STATUS);
    assert_int_equal(reply->len, 2);
    assert_string_equal(reply->str, "OK");
    vetting_resp_free(reply);

    reply = one(r, "-ERR wrong type\r\n", 17);
    assert_int_equal(reply->type, REDIS_REPLY_ERROR);
    assert_string_equal(reply->str, "ERR wrong type");
    vetting_resp_free(reply);

    reply = one(r, ":-42\r\n", 6);
    assert_int_equal(reply->type, REDIS_REPLY_INTEGER);
    assert_int_equal(reply->integer, -42);
    vetting_resp_free(reply);

    reply = one(r, ":9223372036854775807\r\n", 22);
    assert_int_equal(reply->integer, INT64_MAX);
    vetting_resp_free(reply);

    vetting_resp_reader_free(r);
}


static void
test_bulk_and_nil(void **state)
{
    redisReply   *reply;
    redisReader  *r;

    (void) state;

    r = reader();

    reply = one(r, "$7\r\nab\0\r\ncd\r\n", 13);
    assert_int_equal(reply->type, REDIS_REPLY_STRING);
    assert_int_equal(reply->len, 7);
    assert_memory_equal(reply->str, "ab\0\r\ncd", 8);
    vetting_resp_free(reply);

    reply = one(r, "$0\r\n\r\n", 6);
    assert_int_equal(reply->type, REDIS_REPLY_STRING);
    assert_int_equal(reply->len, 0);
    assert_string_equal(reply->str, "");
    vetting_resp_free(reply);

    reply = one(r, "$-1\r\n", 5);
    assert_int_equal(reply->type, REDIS_REPLY_NIL);
    vetting_resp_free(reply);

    reply = one(r, "*-1\r\n", 5);
    assert_int_equal(reply->type, REDIS_REPLY_NIL);
    vetting_resp_free(reply);

    vetting_resp_reader_free(r);
}


static void
test_nested_arrays(void **state)
{
    redisReply   *reply, *e;
    redisReader  *r;

    static const char  in[] =
        "*3\r\n*2\r\n:1\r\n$1\r\na\r\n*0\r\n$-1\r\n";

    (void) state;

    r = reader();

    reply = one(r, in, sizeof(in) - 1);
    assert_int_equal(reply->type, REDIS_REPLY_ARRAY);
    assert_int_equal(reply->elements, 3);

    e = reply->element[0];
    assert_int_equal(e->type, REDIS_REPLY_ARRAY);
    assert_int_equal(e->elements, 2);
    assert_int_equal(e->element[0]->integer, 1);
    assert_string_equal(e->element[1]->str, "a");

    assert_int_equal(reply->element[1]->type, REDIS_REPLY_ARRAY);
    assert_int_equal(reply->element[1]->elements, 0);
    assert_null(reply->element[1]->element);

    assert_int_equal(reply->element[2]->type, REDIS_REPLY_NIL);

    vetting_resp_free(reply);
    vetting_resp_reader_free(r);
}


static void
test_split_byte_by_byte(void **state)
{
    size_t        i, n;
    redisReply   *reply, *got[4];
    redisReader  *r;

    static const char  in[] =
        "+OK\r\n*2\r\n$5\r\nhello\r\n*1\r\n:-3\r\n$-1\r\n-ERR x\r\n";

    (void) state;

    r = reader();
    n = 0;

    for (i = 0; i < sizeof(in) - 1; i++) {
        assert_int_equal(vetting_resp_feed(r, in + i, 1), VETTING_OK);

        for ( ;; ) {
            assert_int_equal(vetting_resp_next(r, &reply), VETTING_OK);

            if (reply == NULL) {
                break;
            }

            assert_true(n < 4);
            got[n++] = reply;
        }
    }

    assert_int_equal(n, 4);

    assert_string_equal(got[0]->str, "OK");
    assert_int_equal(got[1]->elements, 2);
    assert_string_equal(got[1]->element[0]->str, "hello");
    assert_int_equal(got[1]->element[1]->element[0]->integer, -3);
    assert_int_equal(got[2]->type, REDIS_REPLY_NIL);
    assert_int_equal(got[3]->type, REDIS_REPLY_ERROR);

    for (i = 0; i < n; i++) {
        vetting_resp_free(got[i]);
    }

    vetting_resp_reader_free(r);
}


static void
test_pipelined_replies_in_one_feed(void **state)
{
    redisReply   *reply;
    redisReader  *r;

    (void) state;

    r = reader();

    assert_int_equal(vetting_resp_feed(r, ":1\r\n:2\r\n:3", 10), VETTING_OK);

    assert_int_equal(vetting_resp_next(r, &reply), VETTING_OK);
    assert_int_equal(reply->integer, 1);
    vetting_resp_free(reply);

    assert_int_equal(vetting_resp_next(r, &reply), VETTING_OK);
    assert_int_equal(reply->integer, 2);
    vetting_resp_free(reply);

    assert_int_equal(vetting_resp_next(r, &reply), VETTING_OK);
    assert_null(reply);

    assert_int_equal(vetting_resp_feed(r, "\r\n", 2), VETTING_OK);
    assert_int_equal(vetting_resp_next(r, &reply), VETTING_OK);
    assert_int_equal(reply->integer, 3);
    vetting_resp_free(reply);

    vetting_resp_reader_free(r);
}


static void
test_huge_claimed_array_refused(void **state)
{
    redisReader  *r;

    (void) state;

    r = reader();

#ifdef __SANITIZE_ADDRESS__
    largest = 0;
    assert_true(__sanitizer_install_malloc_and_free_hooks(on_malloc,
                                                          on_free) > 0);
#endif

    refused(r, "*2147483647\r\n", 13);

#ifdef __SANITIZE_ADDRESS__
    /* the reader's own 16 KiB buffer at most, never 17 GB */
    assert_true(largest <= 64 * 1024);
#endif

    assert_string_equal(vetting_resp_error(r), "reply over a limit");
    vetting_resp_reader_free(r);

    /* above INT_MAX hiredis refuses it by itself */

    r = reader();
    refused(r, "*2147483648\r\n", 13);
    assert_string_equal(vetting_resp_error(r), "protocol error");
    vetting_resp_reader_free(r);
}


static void
test_array_cap(void **state)
{
    redisReply   *reply;
    redisReader  *r;

    static const char  full[] = "*16\r\n"
        ":0\r\n:1\r\n:2\r\n:3\r\n:4\r\n:5\r\n:6\r\n:7\r\n"
        ":8\r\n:9\r\n:0\r\n:1\r\n:2\r\n:3\r\n:4\r\n:5\r\n";

    (void) state;

    r = reader();
    reply = one(r, full, sizeof(full) - 1);
    assert_int_equal(reply->elements, ELEMENTS);
    vetting_resp_free(reply);
    vetting_resp_reader_free(r);

    r = reader();
    refused(r, "*17\r\n", 5);
    vetting_resp_reader_free(r);

    /* an inner array over the cap frees what was built so far */

    r = reader();
    refused(r, "*2\r\n$3\r\nabc\r\n*99\r\n", 18);
    vetting_resp_reader_free(r);
}


static void
test_depth_cap(void **state)
{
    redisReply   *reply;
    redisReader  *r;

    (void) state;

    r = reader();
    reply = one(r, "*1\r\n*1\r\n*1\r\n:7\r\n", 16);
    assert_int_equal(reply->element[0]->element[0]->element[0]->integer, 7);
    vetting_resp_free(reply);

    refused(r, "*1\r\n*1\r\n*1\r\n*1\r\n:7\r\n", 20);
    vetting_resp_reader_free(r);

    /* hiredis stops at eight levels whatever the cap */

    r = vetting_resp_reader_create(ELEMENTS, 100, BULK);
    assert_non_null(r);
    refused(r, "*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
            40);
    vetting_resp_reader_free(r);
}


static void
test_bulk_cap(void **state)
{
    char          buf[128];
    size_t        i;
    redisReply   *reply;
    redisReader  *r;

    (void) state;

    r = reader();
    memset(buf, 'x', sizeof(buf));
    memcpy(buf, "$64\r\n", 5);
    memcpy(buf + 5 + 64, "\r\n", 2);
    reply = one(r, buf, 5 + 64 + 2);
    assert_int_equal(reply->len, BULK);
    vetting_resp_free(reply);
    vetting_resp_reader_free(r);

    /* refused on the length alone, before the bytes arrive */

    r = reader();
    refused(r, "$65\r\n", 5);
    vetting_resp_reader_free(r);

    r = reader();
    refused(r, "$2000000000", 11);
    vetting_resp_reader_free(r);

    r = reader();
    refused(r, "*2\r\n:1\r\n$99999999999999999999999\r\n", 34);
    vetting_resp_reader_free(r);

    /* a status line over the cap, and one that never ends */

    r = reader();
    memset(buf, 'y', sizeof(buf));
    buf[0] = '+';
    memcpy(buf + 1 + 65, "\r\n", 2);
    refused(r, buf, 1 + 65 + 2);
    vetting_resp_reader_free(r);

    r = reader();
    memset(buf, 'y', sizeof(buf));
    buf[0] = '+';

    for (i = 0; i < 10; i++) {
        if (vetting_resp_feed(r, buf, 16) != VETTING_OK
            || vetting_resp_next(r, &reply) != VETTING_OK)
        {
            break;
        }

        buf[0] = 'y';
    }

    assert_true(i < 10);
    assert_string_equal(vetting_resp_error(r), "reply over a limit");
    vetting_resp_reader_free(r);
}


static void
test_garbage_refused(void **state)
{
    size_t        i;
    redisReader  *r;

    static const char  *bad[] = {
        "?\r\n", "hello\r\n", ":12a\r\n", ":\r\n", "$abc\r\n", "$-2\r\n",
        "*-2\r\n", "*x\r\n", ":99999999999999999999\r\n", "\r\n"
    };

    (void) state;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r = reader();
        refused(r, bad[i], strlen(bad[i]));
        assert_string_equal(vetting_resp_error(r), "protocol error");
        vetting_resp_reader_free(r);
    }
}


static void
test_partial_reply_freed_with_reader(void **state)
{
    redisReply   *reply;
    redisReader  *r;

    (void) state;

    /* the leak checker fails this test if the partial array leaks */

    r = reader();
    assert_int_equal(vetting_resp_feed(r, "*3\r\n:1\r\n*2\r\n$2\r\nab\r\n", 20),
                     VETTING_OK);
    assert_int_equal(vetting_resp_next(r, &reply), VETTING_OK);
    assert_null(reply);
    assert_string_equal(vetting_resp_error(r), "no error");
    vetting_resp_reader_free(r);

    vetting_resp_reader_free(NULL);
    vetting_resp_free(NULL);
}


static void
test_command_format(void **state)
{
    long         n;
    char        *cmd;
    size_t       argvlen[3];
    const char  *argv[3];

    static const char  expect[] =
        "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\0x\r\n";

    (void) state;

    argv[0] = "SET";
    argv[1] = "k";
    argv[2] = "v\0x";
    argvlen[0] = 3;
    argvlen[1] = 1;
    argvlen[2] = 3;

    n = vetting_resp_command(&cmd, 3, argv, argvlen);
    assert_int_equal(n, sizeof(expect) - 1);
    assert_memory_equal(cmd, expect, n);
    assert_int_equal(cmd[n], '\0');
    free(cmd);

    /* without lengths the arguments are C strings */

    n = vetting_resp_command(&cmd, 2, argv, NULL);
    assert_int_equal(n, 20);
    assert_memory_equal(cmd, "*2\r\n$3\r\nSET\r\n$1\r\nk\r\n", 20);
    free(cmd);
}


static void
test_command_refuses_bad_arguments(void **state)
{
    char        *cmd;
    size_t       argvlen[2];
    const char  *argv[2];

    (void) state;

    argv[0] = "GET";
    argv[1] = NULL;
    argvlen[0] = 3;
    argvlen[1] = 0;

    assert_int_equal(vetting_resp_command(&cmd, 0, argv, argvlen), -1);
    assert_null(cmd);
    assert_int_equal(vetting_resp_command(&cmd, 2, argv, argvlen), -1);
    assert_int_equal(vetting_resp_command(&cmd, 1, NULL, NULL), -1);

    /* a length that would overflow hiredis's int is refused, unread */

    argv[1] = "k";
    argvlen[1] = (size_t) 1 << 31;
    assert_int_equal(vetting_resp_command(&cmd, 2, argv, argvlen), -1);
    assert_null(cmd);
}


static void
test_command_round_trip(void **state)
{
    long          n;
    char         *cmd;
    size_t        i, argvlen[4];
    redisReply   *reply;
    const char   *argv[4];
    redisReader  *r;

    (void) state;

    argv[0] = "EVALSHA";
    argv[1] = "\r\n$*:+-";
    argv[2] = "";
    argv[3] = "\xff\x00\x01";
    argvlen[0] = 7;
    argvlen[1] = 7;
    argvlen[2] = 0;
    argvlen[3] = 3;

    n = vetting_resp_command(&cmd, 4, argv, argvlen);
    assert_true(n > 0);

    r = reader();
    reply = one(r, cmd, (size_t) n);
    free(cmd);

    assert_int_equal(reply->type, REDIS_REPLY_ARRAY);
    assert_int_equal(reply->elements, 4);

    for (i = 0; i < 4; i++) {
        assert_int_equal(reply->element[i]->type, REDIS_REPLY_STRING);
        assert_int_equal(reply->element[i]->len, argvlen[i]);
        assert_memory_equal(reply->element[i]->str, argv[i], argvlen[i]);
    }

    vetting_resp_free(reply);
    vetting_resp_reader_free(r);
}


static void
test_helpers_integer(void **state)
{
    long long     v;
    redisReply   *reply;
    redisReader  *r;

    static const char  in[] =
        "*7\r\n:5\r\n$3\r\n-12\r\n$20\r\n-9223372036854775808\r\n"
        "$19\r\n9223372036854775808\r\n$3\r\n1 2\r\n$-1\r\n+7\r\n";

    (void) state;

    r = reader();
    reply = one(r, in, sizeof(in) - 1);

    assert_int_equal(vetting_resp_array_integer(reply, 0, &v), VETTING_OK);
    assert_int_equal(v, 5);
    assert_int_equal(vetting_resp_array_integer(reply, 1, &v), VETTING_OK);
    assert_int_equal(v, -12);
    assert_int_equal(vetting_resp_array_integer(reply, 2, &v), VETTING_OK);
    assert_true(v == INT64_MIN);
    assert_int_equal(vetting_resp_array_integer(reply, 3, &v),
                     VETTING_ERROR);
    assert_int_equal(vetting_resp_array_integer(reply, 4, &v),
                     VETTING_ERROR);
    assert_int_equal(vetting_resp_array_integer(reply, 5, &v),
                     VETTING_DECLINED);
    assert_int_equal(vetting_resp_array_integer(reply, 6, &v),
                     VETTING_ERROR);
    assert_int_equal(vetting_resp_array_integer(reply, 7, &v),
                     VETTING_ERROR);

    assert_int_equal(vetting_resp_integer(reply->element[0], &v),
                     VETTING_OK);
    assert_int_equal(vetting_resp_integer(reply, &v), VETTING_ERROR);
    assert_int_equal(vetting_resp_integer(NULL, &v), VETTING_ERROR);
    assert_int_equal(vetting_resp_array_integer(reply->element[0], 0, &v),
                     VETTING_ERROR);

    vetting_resp_free(reply);
    vetting_resp_reader_free(r);
}


static void
test_helpers_string(void **state)
{
    redisReply     *reply;
    redisReader    *r;
    vetting_str_t   s;

    static const char  in[] = "*4\r\n$3\r\nabc\r\n+OK\r\n$-1\r\n:1\r\n";

    (void) state;

    r = reader();
    reply = one(r, in, sizeof(in) - 1);

    assert_int_equal(vetting_resp_array_string(reply, 0, &s), VETTING_OK);
    assert_int_equal(s.len, 3);
    assert_memory_equal(s.data, "abc", 3);
    assert_int_equal(vetting_resp_array_string(reply, 1, &s), VETTING_OK);
    assert_int_equal(s.len, 2);
    assert_int_equal(vetting_resp_array_string(reply, 2, &s),
                     VETTING_DECLINED);
    assert_int_equal(vetting_resp_array_string(reply, 3, &s),
                     VETTING_ERROR);
    assert_int_equal(vetting_resp_array_string(reply, 4, &s),
                     VETTING_ERROR);
    assert_int_equal(vetting_resp_array_string(NULL, 0, &s),
                     VETTING_ERROR);

    vetting_resp_free(reply);
    vetting_resp_reader_free(r);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_status_error_integer),
        cmocka_unit_test(test_bulk_and_nil),
        cmocka_unit_test(test_nested_arrays),
        cmocka_unit_test(test_split_byte_by_byte),
        cmocka_unit_test(test_pipelined_replies_in_one_feed),
        cmocka_unit_test(test_huge_claimed_array_refused),
        cmocka_unit_test(test_array_cap),
        cmocka_unit_test(test_depth_cap),
        cmocka_unit_test(test_bulk_cap),
        cmocka_unit_test(test_garbage_refused),
        cmocka_unit_test(test_partial_reply_freed_with_reader),
        cmocka_unit_test(test_command_format),
        cmocka_unit_test(test_command_refuses_bad_arguments),
        cmocka_unit_test(test_command_round_trip),
        cmocka_unit_test(test_helpers_integer),
        cmocka_unit_test(test_helpers_string)
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
