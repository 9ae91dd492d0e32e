
/*
 * Copyright (C) ngx_vetting_module authors
 */


#include "vetting_resp.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>


/*
 * hiredis frees an idle read buffer larger than maxbuf on the next
 * feed; one read of hiredis is 16 KiB, so that much is kept between
 * replies.  maxbuf does not cap the buffer: the pending check does.
 */
#define VETTING_RESP_MAXBUF    16384

/* "$", up to 20 digits and two CRLFs around a bulk string */
#define VETTING_RESP_SLACK     32

/* Redis's own proto-max-bulk-len: no argument is longer */
#define VETTING_RESP_ARG_MAX   (512 * 1024 * 1024)


typedef struct {
    size_t                      max_elements;
    size_t                      max_bulk;
    unsigned                    max_depth;
    unsigned                    over:1;
} vetting_resp_caps_t;


static void *vetting_resp_create_string(const redisReadTask *task,
    char *str, size_t len);
static void *vetting_resp_create_array(const redisReadTask *task,
    int elements);
static void *vetting_resp_create_integer(const redisReadTask *task,
    long long value);
static void *vetting_resp_create_nil(const redisReadTask *task);
static void vetting_resp_free_object(void *obj);
static redisReply *vetting_resp_create(const redisReadTask *task,
    int type);
static int vetting_resp_attach(const redisReadTask *task, redisReply *r);
static int vetting_resp_pending(redisReader *reader);
static size_t vetting_resp_digits(size_t n);
static int vetting_resp_parse_ll(const char *s, size_t len,
    long long *value);


static redisReplyObjectFunctions  vetting_resp_functions = {
    vetting_resp_create_string,
    vetting_resp_create_array,
    vetting_resp_create_integer,
    vetting_resp_create_nil,
    vetting_resp_free_object
};


redisReader *
vetting_resp_reader_create(size_t max_elements, unsigned max_depth,
    size_t max_bulk)
{
    redisReader          *reader;
    vetting_resp_caps_t  *caps;

    caps = malloc(sizeof(vetting_resp_caps_t));
    if (caps == NULL) {
        return NULL;
    }

    caps->max_elements = max_elements;
    caps->max_bulk = max_bulk;
    caps->max_depth = max_depth;
    caps->over = 0;

    reader = redisReaderCreateWithFunctions(&vetting_resp_functions);
    if (reader == NULL) {
        free(caps);
        return NULL;
    }

    /* every read task takes its privdata from the reader's */

    reader->privdata = caps;
    reader->maxbuf = VETTING_RESP_MAXBUF;

    return reader;
}


void
vetting_resp_reader_free(redisReader *reader)
{
    vetting_resp_caps_t  *caps;

    if (reader == NULL) {
        return;
    }

    caps = reader->privdata;

    /* frees a partial reply through vetting_resp_free_object() */
    redisReaderFree(reader);

    free(caps);
}


int
vetting_resp_feed(redisReader *reader, const char *buf, size_t len)
{
    if (reader->err) {
        return VETTING_ERROR;
    }

    if (redisReaderFeed(reader, buf, len) != REDIS_OK) {
        return VETTING_ERROR;
    }

    return VETTING_OK;
}


int
vetting_resp_next(redisReader *reader, redisReply **reply)
{
    void  *obj;

    *reply = NULL;

    if (redisReaderGetReply(reader, &obj) != REDIS_OK) {
        return VETTING_ERROR;
    }

    if (obj != NULL) {
        *reply = obj;
        return VETTING_OK;
    }

    return vetting_resp_pending(reader);
}


/*
 * With no complete reply left, the unread bytes are one unfinished
 * item.  hiredis waits for a whole bulk string before it calls us, and
 * for a whole line however long, so both are capped here: a bulk
 * string as soon as its length is known, anything else by the bytes
 * it keeps buffered.
 */

static int
vetting_resp_pending(redisReader *reader)
{
    size_t                i, n, pending;
    const char           *p;
    vetting_resp_caps_t  *caps;

    caps = reader->privdata;

    pending = reader->len - reader->pos;

    if (pending > caps->max_bulk + VETTING_RESP_SLACK) {
        goto over;
    }

    if (reader->ridx < 0
        || reader->rstack[reader->ridx].type != REDIS_REPLY_STRING)
    {
        return VETTING_OK;
    }

    /* the type byte is taken; the length, maybe partial, follows */

    p = reader->buf + reader->pos;
    n = 0;

    for (i = 0; i < pending && p[i] >= '0' && p[i] <= '9'; i++) {
        n = n * 10 + (p[i] - '0');

        if (n > caps->max_bulk) {
            goto over;
        }
    }

    return VETTING_OK;

over:

    caps->over = 1;

    /* the reader refuses all further calls once err is set */

    reader->err = REDIS_ERR_PROTOCOL;
    strcpy(reader->errstr, "reply over a limit");

    return VETTING_ERROR;
}


const char *
vetting_resp_error(const redisReader *reader)
{
    const vetting_resp_caps_t  *caps;

    caps = reader->privdata;

    if (caps->over) {
        return "reply over a limit";
    }

    switch (reader->err) {

    case 0:
        return "no error";

    case REDIS_ERR_PROTOCOL:
        return "protocol error";

    case REDIS_ERR_OOM:
        return "out of memory";

    default:
        return "reader error";
    }
}


void
vetting_resp_free(redisReply *reply)
{
    size_t  i;

    if (reply == NULL) {
        return;
    }

    if (reply->element != NULL) {

        /* depth is bounded by the reader: at most 8 levels */

        for (i = 0; i < reply->elements; i++) {
            vetting_resp_free(reply->element[i]);
        }

        free(reply->element);
    }

    free(reply->str);
    free(reply);
}


static void *
vetting_resp_create_string(const redisReadTask *task, char *str,
    size_t len)
{
    redisReply           *r;
    vetting_resp_caps_t  *caps;

    caps = task->privdata;

    if (len > caps->max_bulk) {
        caps->over = 1;
        return NULL;
    }

    r = vetting_resp_create(task, task->type);
    if (r == NULL) {
        return NULL;
    }

    r->str = malloc(len + 1);
    if (r->str == NULL) {
        free(r);
        return NULL;
    }

    memcpy(r->str, str, len);
    r->str[len] = '\0';
    r->len = len;

    if (vetting_resp_attach(task, r) != VETTING_OK) {
        vetting_resp_free(r);
        return NULL;
    }

    return r;
}


/* a refusal here is a reader error before anything is allocated */

static void *
vetting_resp_create_array(const redisReadTask *task, int elements)
{
    unsigned              depth;
    redisReply           *r;
    vetting_resp_caps_t  *caps;
    const redisReadTask  *t;

    caps = task->privdata;

    depth = 1;

    for (t = task->parent; t != NULL; t = t->parent) {
        depth++;
    }

    if (elements < 0
        || (size_t) elements > caps->max_elements
        || depth > caps->max_depth)
    {
        caps->over = 1;
        return NULL;
    }

    r = vetting_resp_create(task, REDIS_REPLY_ARRAY);
    if (r == NULL) {
        return NULL;
    }

    if (elements > 0) {
        r->element = calloc((size_t) elements, sizeof(redisReply *));
        if (r->element == NULL) {
            free(r);
            return NULL;
        }

        r->elements = (size_t) elements;
    }

    if (vetting_resp_attach(task, r) != VETTING_OK) {
        vetting_resp_free(r);
        return NULL;
    }

    return r;
}


static void *
vetting_resp_create_integer(const redisReadTask *task, long long value)
{
    redisReply  *r;

    r = vetting_resp_create(task, REDIS_REPLY_INTEGER);
    if (r == NULL) {
        return NULL;
    }

    r->integer = value;

    if (vetting_resp_attach(task, r) != VETTING_OK) {
        vetting_resp_free(r);
        return NULL;
    }

    return r;
}


static void *
vetting_resp_create_nil(const redisReadTask *task)
{
    redisReply  *r;

    r = vetting_resp_create(task, REDIS_REPLY_NIL);
    if (r == NULL) {
        return NULL;
    }

    if (vetting_resp_attach(task, r) != VETTING_OK) {
        vetting_resp_free(r);
        return NULL;
    }

    return r;
}


static void
vetting_resp_free_object(void *obj)
{
    vetting_resp_free(obj);
}


static redisReply *
vetting_resp_create(const redisReadTask *task, int type)
{
    redisReply  *r;

    (void) task;

    r = calloc(1, sizeof(redisReply));
    if (r == NULL) {
        return NULL;
    }

    r->type = type;

    return r;
}


/*
 * Puts r in its parent array; the parent is freed with the whole
 * reply, so r belongs to the reply from here on.
 */

static int
vetting_resp_attach(const redisReadTask *task, redisReply *r)
{
    redisReply  *parent;

    if (task->parent == NULL) {
        return VETTING_OK;
    }

    parent = task->parent->obj;

    if (parent == NULL
        || parent->type != REDIS_REPLY_ARRAY
        || task->idx < 0
        || (size_t) task->idx >= parent->elements
        || parent->element[task->idx] != NULL)
    {
        return VETTING_ERROR;
    }

    parent->element[task->idx] = r;

    return VETTING_OK;
}


/*
 * hiredis 0.14.1 formats the command into a buffer from plain malloc()
 * (checked in Debian's libhiredis.so.0.14 as well), so the caller frees
 * it with free().  Its length is an int there: longer commands are
 * refused here before they could overflow it.
 */

long
vetting_resp_command(char **out, int argc, const char **argv,
    const size_t *argvlen)
{
    int     i, n;
    char   *cmd;
    size_t  len, total;

    *out = NULL;

    if (argc <= 0 || argv == NULL) {
        return -1;
    }

    total = 1 + vetting_resp_digits((size_t) argc) + 2;

    for (i = 0; i < argc; i++) {
        if (argv[i] == NULL) {
            return -1;
        }

        len = (argvlen != NULL) ? argvlen[i] : strlen(argv[i]);

        if (len > VETTING_RESP_ARG_MAX) {
            return -1;
        }

        total += 1 + vetting_resp_digits(len) + 2 + len + 2;

        if (total >= INT_MAX) {
            return -1;
        }
    }

    n = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (n < 0) {
        return -1;
    }

    *out = cmd;

    return n;
}


static size_t
vetting_resp_digits(size_t n)
{
    size_t  d;

    for (d = 1; n >= 10; d++) {
        n /= 10;
    }

    return d;
}


int
vetting_resp_integer(const redisReply *r, long long *value)
{
    if (r == NULL) {
        return VETTING_ERROR;
    }

    switch (r->type) {

    case REDIS_REPLY_INTEGER:
        *value = r->integer;
        return VETTING_OK;

    case REDIS_REPLY_STRING:
        return vetting_resp_parse_ll(r->str, r->len, value);

    case REDIS_REPLY_NIL:
        return VETTING_DECLINED;

    default:
        return VETTING_ERROR;
    }
}


int
vetting_resp_array_integer(const redisReply *r, size_t i, long long *value)
{
    if (r == NULL || r->type != REDIS_REPLY_ARRAY || i >= r->elements) {
        return VETTING_ERROR;
    }

    return vetting_resp_integer(r->element[i], value);
}


int
vetting_resp_array_string(const redisReply *r, size_t i,
    vetting_str_t *value)
{
    const redisReply  *e;

    if (r == NULL || r->type != REDIS_REPLY_ARRAY || i >= r->elements) {
        return VETTING_ERROR;
    }

    e = r->element[i];

    if (e == NULL) {
        return VETTING_ERROR;
    }

    switch (e->type) {

    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
        value->data = (const unsigned char *) e->str;
        value->len = e->len;
        return VETTING_OK;

    case REDIS_REPLY_NIL:
        return VETTING_DECLINED;

    default:
        return VETTING_ERROR;
    }
}


/* a decimal integer, as GET gives a counter: "-12", "0", no blanks */

static int
vetting_resp_parse_ll(const char *s, size_t len, long long *value)
{
    size_t              i;
    unsigned long long  n, max;

    if (s == NULL || len == 0) {
        return VETTING_ERROR;
    }

    i = (s[0] == '-');
    max = i ? (unsigned long long) LLONG_MAX + 1 : LLONG_MAX;

    if (i == len) {
        return VETTING_ERROR;
    }

    n = 0;

    for ( /* void */ ; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return VETTING_ERROR;
        }

        if (n > (max - (s[i] - '0')) / 10) {
            return VETTING_ERROR;
        }

        n = n * 10 + (s[i] - '0');
    }

    if (s[0] == '-') {
        *value = (n == (unsigned long long) LLONG_MAX + 1)
                 ? LLONG_MIN : -(long long) n;

    } else {
        *value = (long long) n;
    }

    return VETTING_OK;
}
