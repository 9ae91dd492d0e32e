
/*
 * Copyright (C) ngx_vetting_module authors
 *
 * libFuzzer target for vetting_resp.c.  The first byte sets how the
 * rest is cut into feeds; every reply is checked against the caps and
 * walked with the helpers.  The same bytes, cut into arguments, are
 * formatted as a command and must read back unchanged.
 */


#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vetting_resp.h"


#define ELEMENTS  32
#define DEPTH     4
#define BULK      1024
#define ARGS      8


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk(const redisReply *r, unsigned depth);
static void round_trip(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t          step, n, all;
    redisReply     *reply;
    redisReader    *reader;
    const uint8_t  *p;

    if (size == 0) {
        return 0;
    }

    step = (size_t) (data[0] % 64) + 1;
    data++;
    size--;

    p = data;
    all = size;

    reader = vetting_resp_reader_create(ELEMENTS, DEPTH, BULK);
    if (reader == NULL) {
        return 0;
    }

    while (size) {
        n = (size < step) ? size : step;

        if (vetting_resp_feed(reader, (const char *) data, n) != VETTING_OK)
        {
            break;
        }

        data += n;
        size -= n;

        for ( ;; ) {
            if (vetting_resp_next(reader, &reply) != VETTING_OK) {
                (void) vetting_resp_error(reader);
                goto done;
            }

            if (reply == NULL) {
                break;
            }

            walk(reply, 1);
            vetting_resp_free(reply);
        }

        /* what stays buffered is one unfinished item, capped */

        if (reader->len - reader->pos > BULK + 32) {
            abort();
        }
    }

done:

    vetting_resp_reader_free(reader);

    round_trip(p, all);

    return 0;
}


static void
walk(const redisReply *r, unsigned depth)
{
    size_t         i;
    long long      v;
    vetting_str_t  s;

    if (r == NULL) {
        abort();
    }

    switch (r->type) {

    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
        if (r->str == NULL || r->len > BULK || r->str[r->len] != '\0') {
            abort();
        }

        (void) vetting_resp_integer(r, &v);
        break;

    case REDIS_REPLY_ARRAY:
        if (depth > DEPTH || r->elements > ELEMENTS) {
            abort();
        }

        for (i = 0; i <= r->elements; i++) {
            (void) vetting_resp_array_integer(r, i, &v);
            (void) vetting_resp_array_string(r, i, &s);

            if (i < r->elements) {
                walk(r->element[i], depth + 1);
            }
        }

        break;

    case REDIS_REPLY_INTEGER:
    case REDIS_REPLY_NIL:
        (void) vetting_resp_integer(r, &v);
        break;

    default:
        abort();
    }
}


/* arguments are the input cut at each 0xff byte */

static void
round_trip(const uint8_t *data, size_t size)
{
    int           argc, i;
    long          n;
    char         *cmd;
    size_t        argvlen[ARGS], start, j;
    redisReply   *reply;
    const char   *argv[ARGS];
    redisReader  *reader;

    argc = 0;
    start = 0;

    for (j = 0; j <= size && argc < ARGS; j++) {
        if (j == size || data[j] == 0xff) {
            argv[argc] = (const char *) data + start;
            argvlen[argc] = j - start;
            argc++;
            start = j + 1;
        }
    }

    n = vetting_resp_command(&cmd, argc, argv, argvlen);
    if (n < 0) {
        abort();
    }

    reader = vetting_resp_reader_create(ARGS, 1, size + 1);
    if (reader == NULL) {
        free(cmd);
        return;
    }

    if (vetting_resp_feed(reader, cmd, (size_t) n) != VETTING_OK
        || vetting_resp_next(reader, &reply) != VETTING_OK
        || reply == NULL
        || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != (size_t) argc)
    {
        abort();
    }

    for (i = 0; i < argc; i++) {
        if (reply->element[i]->type != REDIS_REPLY_STRING
            || reply->element[i]->len != argvlen[i]
            || memcmp(reply->element[i]->str, argv[i], argvlen[i]) != 0)
        {
            abort();
        }
    }

    vetting_resp_free(reply);
    vetting_resp_reader_free(reader);
    free(cmd);
}
