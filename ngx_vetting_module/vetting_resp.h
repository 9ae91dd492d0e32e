
/*
 * Copyright (C) ngx_vetting_module authors
 *
 * Redis replies, parsed by hiredis's reader with reply objects of our
 * own: hiredis 0.14.1 would calloc() whatever element count a reply
 * claims (a 13-byte reply can ask for 17 GB), so arrays, nesting and
 * bulk strings are capped here and a reply over a cap is a reader error.
 */


#ifndef _VETTING_RESP_H_INCLUDED_
#define _VETTING_RESP_H_INCLUDED_


#include "vetting.h"

#include <hiredis/hiredis.h>


/*
 * A reader whose replies are redisReply objects allocated with malloc();
 * free them with vetting_resp_free(), never freeReplyObject().
 * max_elements caps every array, max_depth the nesting of arrays (1:
 * flat arrays only; hiredis itself stops at 8), max_bulk every bulk
 * string, status and error line.  Returns NULL when memory is short
 * (Debian's hiredis may abort() instead inside its own allocations).
 */
redisReader *vetting_resp_reader_create(size_t max_elements,
    unsigned max_depth, size_t max_bulk);

void vetting_resp_reader_free(redisReader *reader);

/*
 * Feeds bytes and takes the next complete reply, if any:
 * VETTING_OK with *reply set (NULL when more input is needed), or
 * VETTING_ERROR when the stream is not valid RESP or breaks a cap
 * (the reader is then unusable; the connection must be closed).
 * After each feed, call vetting_resp_next() until it gives no reply:
 * the buffered rest of an unfinished reply is capped there, so that
 * memory stays within about max_bulk plus one feed.
 */
int vetting_resp_feed(redisReader *reader, const char *buf, size_t len);
int vetting_resp_next(redisReader *reader, redisReply **reply);

/* why the reader failed, as a fixed text for the log */
const char *vetting_resp_error(const redisReader *reader);

void vetting_resp_free(redisReply *reply);

/*
 * Formats a command from binary-safe arguments (argvlen may be NULL
 * for C strings), as RESP.  Returns the length and sets *out to a
 * malloc()ed, NUL-terminated buffer to free with free(), or -1 when
 * memory is short, argc < 1 or the command would exceed INT_MAX bytes.
 */
long vetting_resp_command(char **out, int argc, const char **argv,
    const size_t *argvlen);

/*
 * Helpers for reading replies; all return VETTING_ERROR on a mismatch
 * and VETTING_DECLINED for a nil.  An integer may also come as a bulk
 * string holding a decimal integer, as GET returns a counter; a string
 * may be a bulk string or a status, and points into the reply.
 */
int vetting_resp_integer(const redisReply *r, long long *value);
int vetting_resp_array_integer(const redisReply *r, size_t i,
    long long *value);
int vetting_resp_array_string(const redisReply *r, size_t i,
    vetting_str_t *value);


#endif /* _VETTING_RESP_H_INCLUDED_ */
