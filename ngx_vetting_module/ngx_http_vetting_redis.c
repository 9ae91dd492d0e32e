
/*
 * Copyright (C) ngx_vetting_module authors
 *
 * Redis on the nginx event loop.  Each worker keeps two connections of
 * its own, opened in init_process: one for commands and one subscribed
 * to the channel that tells every gateway about suspensions.  They are
 * nginx peer connections: nginx does the non-blocking connect, the reads
 * and the writes, and hiredis only formats commands and parses replies
 * (its reader, with reply objects capped in vetting_resp.c).  Timeouts
 * are nginx timers in milliseconds; the address was resolved when the
 * configuration was read.
 */


#include "ngx_http_vetting_module.h"

#include "ngx_http_vetting_lua.h"


#define NGX_HTTP_VETTING_REDIS_CLOSED      0
#define NGX_HTTP_VETTING_REDIS_CONNECTING  1
#define NGX_HTTP_VETTING_REDIS_HANDSHAKE   2
#define NGX_HTTP_VETTING_REDIS_READY       3

/* caps on what a reply may claim */
#define NGX_HTTP_VETTING_REPLY_ELEMENTS    1048576
#define NGX_HTTP_VETTING_REPLY_DEPTH       4
#define NGX_HTTP_VETTING_REPLY_BULK        (16 * 1024 * 1024)

/* unsent commands a connection buffers before refusing more */
#define NGX_HTTP_VETTING_OUT_MAX           (4 * 1024 * 1024)

/* what one flush takes from the zone */
#define NGX_HTTP_VETTING_FLUSH_COUNTERS    64
#define NGX_HTTP_VETTING_FLUSH_ENTRIES     128
#define NGX_HTTP_VETTING_FLUSH_BYTES       (512 * 1024)

/* an outbox entry refused this many times is dropped */
#define NGX_HTTP_VETTING_ATTEMPTS_MAX      20


typedef struct {
    ngx_queue_t                          queue;
    ngx_http_vetting_redis_handler_pt    handler;
    void                                *data;
    ngx_msec_t                           deadline;
} ngx_http_vetting_redis_cmd_t;


typedef struct {
    ngx_peer_connection_t                peer;
    redisReader                         *reader;
    ngx_queue_t                          pending;
    ngx_uint_t                           npending;

    u_char                              *out;
    size_t                               out_pos;
    size_t                               out_len;
    size_t                               out_size;

    ngx_event_t                          retry;
    ngx_uint_t                           failures;
    ngx_uint_t                           state;
    ngx_log_t                            log;

    unsigned                             subscriber:1;
    unsigned                             auth_failed:1;
} ngx_http_vetting_redis_t;


static void ngx_http_vetting_redis_connect(ngx_http_vetting_redis_t *rd);
static void ngx_http_vetting_redis_retry(ngx_event_t *ev);
static void ngx_http_vetting_redis_close(ngx_http_vetting_redis_t *rd,
    const char *reason);
static void ngx_http_vetting_redis_write_handler(ngx_event_t *ev);
static void ngx_http_vetting_redis_read_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_vetting_redis_test_connect(ngx_connection_t *c);
static ngx_int_t ngx_http_vetting_redis_append(ngx_http_vetting_redis_t *rd,
    u_char *data, size_t len, ngx_http_vetting_redis_handler_pt handler,
    void *hdata);
static ngx_int_t ngx_http_vetting_redis_argv(ngx_http_vetting_redis_t *rd,
    ngx_http_vetting_cmd_t *cmd, ngx_http_vetting_redis_handler_pt handler,
    void *data);
static void ngx_http_vetting_redis_handshake(ngx_http_vetting_redis_t *rd);
static void ngx_http_vetting_redis_auth_handler(redisReply *reply,
    void *data);
static void ngx_http_vetting_redis_ok_handler(redisReply *reply,
    void *data);
static void ngx_http_vetting_redis_load_handler(redisReply *reply,
    void *data);
static void ngx_http_vetting_redis_subscribed(redisReply *reply, void *data);
static void ngx_http_vetting_redis_message(ngx_http_vetting_redis_t *rd,
    redisReply *reply);
static void ngx_http_vetting_redis_up(void);
static void ngx_http_vetting_redis_down(const char *reason);
static ngx_uint_t ngx_http_vetting_scope_valid(ngx_str_t *scope);
static void ngx_http_vetting_redis_resync(void);
static void ngx_http_vetting_redis_resync_handler(redisReply *reply,
    void *data);
static void ngx_http_vetting_redis_resync_timer(ngx_event_t *ev);
static void ngx_http_vetting_redis_wake(void);
static void ngx_http_vetting_redis_flush(ngx_event_t *ev);
static void ngx_http_vetting_redis_count_handler(redisReply *reply,
    void *data);
static void ngx_http_vetting_redis_outbox_handler(redisReply *reply,
    void *data);
static ngx_int_t ngx_http_vetting_redis_missing_function(redisReply *reply);
static void ngx_http_vetting_waiter_handler(redisReply *reply, void *data);
static void ngx_http_vetting_waiter_cleanup(void *data);
static ngx_int_t ngx_http_vetting_redis_put(ngx_uint_t kind,
    ngx_http_vetting_cmd_t *cmd, ngx_log_t *log);
static void ngx_http_vetting_redis_block_args(ngx_http_vetting_cmd_t *cmd,
    ngx_str_t *app, ngx_str_t *scope, ngx_str_t *rule, ngx_str_t *event,
    uint64_t count, uint64_t threshold, uint64_t window,
    ngx_str_t *evidence);
static void ngx_http_vetting_redis_suspension_keys(
    ngx_http_vetting_cmd_t *cmd, ngx_str_t *app, ngx_str_t *scope);


static const char  ngx_http_vetting_library[] = NGX_HTTP_VETTING_LUA;


/* per worker */
static ngx_http_vetting_main_conf_t  *ngx_http_vetting_vmcf;
static ngx_http_vetting_redis_t      *ngx_http_vetting_cmd;
static ngx_http_vetting_redis_t      *ngx_http_vetting_sub;
static ngx_event_t                    ngx_http_vetting_flush_ev;
static ngx_event_t                    ngx_http_vetting_kick_ev;
static ngx_event_t                    ngx_http_vetting_resync_ev;
static ngx_queue_t                    ngx_http_vetting_sync_waiters;
static ngx_uint_t                     ngx_http_vetting_resyncing;
static ngx_uint_t                     ngx_http_vetting_connect_failed;
static ngx_uint_t                     ngx_http_vetting_exiting;

/* timers log the fd of their data: give them one that says "none" */
static ngx_connection_t               ngx_http_vetting_dumb;


static ngx_str_t  ngx_http_vetting_state_off = ngx_string("off");
static ngx_str_t  ngx_http_vetting_state_up = ngx_string("up");
static ngx_str_t  ngx_http_vetting_state_down = ngx_string("down");
static ngx_str_t  ngx_http_vetting_state_connecting =
    ngx_string("connecting");
static ngx_str_t  ngx_http_vetting_state_none = ngx_string("-");


ngx_int_t
ngx_http_vetting_redis_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                     i;
    ngx_http_vetting_redis_t      *rd;
    ngx_http_vetting_main_conf_t  *vmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    if (cycle->conf_ctx[ngx_http_module.index] == NULL) {
        return NGX_OK;
    }

    vmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_vetting_module);

    if (vmcf == NULL || vmcf->redis == NULL || !vmcf->used) {
        return NGX_OK;
    }

    ngx_http_vetting_vmcf = vmcf;

    ngx_queue_init(&ngx_http_vetting_sync_waiters);

    ngx_http_vetting_dumb.fd = (ngx_socket_t) -1;

    for (i = 0; i < 2; i++) {
        rd = ngx_calloc(sizeof(ngx_http_vetting_redis_t), cycle->log);
        if (rd == NULL) {
            return NGX_ERROR;
        }

        rd->log = *cycle->log;
        rd->log.action = i ? "listening to redis" : "talking to redis";
        rd->subscriber = i;

        rd->retry.handler = ngx_http_vetting_redis_retry;
        rd->retry.data = &ngx_http_vetting_dumb;
        rd->retry.log = cycle->log;
        rd->retry.cancelable = 1;

        ngx_queue_init(&rd->pending);

        if (i) {
            ngx_http_vetting_sub = rd;

        } else {
            ngx_http_vetting_cmd = rd;
        }
    }

    ngx_http_vetting_flush_ev.handler = ngx_http_vetting_redis_flush;
    ngx_http_vetting_flush_ev.log = cycle->log;
    ngx_http_vetting_flush_ev.cancelable = 1;
    ngx_http_vetting_flush_ev.data = &ngx_http_vetting_dumb;

    ngx_http_vetting_kick_ev.handler = ngx_http_vetting_redis_flush;
    ngx_http_vetting_kick_ev.log = cycle->log;
    ngx_http_vetting_kick_ev.data = &ngx_http_vetting_dumb;

    ngx_http_vetting_resync_ev.handler = ngx_http_vetting_redis_resync_timer;
    ngx_http_vetting_resync_ev.log = cycle->log;
    ngx_http_vetting_resync_ev.cancelable = 1;
    ngx_http_vetting_resync_ev.data = &ngx_http_vetting_dumb;

    ngx_add_timer(&ngx_http_vetting_flush_ev, vmcf->redis_sync);
    ngx_add_timer(&ngx_http_vetting_resync_ev, vmcf->redis_resync);

    ngx_http_vetting_redis_connect(ngx_http_vetting_cmd);
    ngx_http_vetting_redis_connect(ngx_http_vetting_sub);

    return NGX_OK;
}


void
ngx_http_vetting_redis_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                 i;
    ngx_http_vetting_redis_t  *rd;

    if (ngx_http_vetting_vmcf == NULL) {
        return;
    }

    ngx_http_vetting_exiting = 1;

    for (i = 0; i < 2; i++) {
        rd = i ? ngx_http_vetting_sub : ngx_http_vetting_cmd;

        if (rd == NULL) {
            continue;
        }

        if (rd->retry.timer_set) {
            ngx_del_timer(&rd->retry);
        }

        ngx_http_vetting_redis_close(rd, NULL);

        if (rd->out) {
            ngx_free(rd->out);
        }

        ngx_free(rd);
    }

    ngx_http_vetting_cmd = NULL;
    ngx_http_vetting_sub = NULL;
    ngx_http_vetting_vmcf = NULL;
}


/* connecting */

static void
ngx_http_vetting_redis_connect(ngx_http_vetting_redis_t *rd)
{
    ngx_int_t                      rc;
    ngx_connection_t              *c;
    ngx_http_vetting_main_conf_t  *vmcf;

    vmcf = ngx_http_vetting_vmcf;

    ngx_memzero(&rd->peer, sizeof(ngx_peer_connection_t));

    rd->peer.sockaddr = vmcf->redis->sockaddr;
    rd->peer.socklen = vmcf->redis->socklen;
    rd->peer.name = &vmcf->redis->name;
    rd->peer.get = ngx_event_get_peer;
    rd->peer.log = &rd->log;
    rd->peer.log_error = NGX_ERROR_ERR;

    rd->reader = vetting_resp_reader_create(NGX_HTTP_VETTING_REPLY_ELEMENTS,
                                            NGX_HTTP_VETTING_REPLY_DEPTH,
                                            NGX_HTTP_VETTING_REPLY_BULK);
    if (rd->reader == NULL) {
        ngx_http_vetting_redis_close(rd, "out of memory");
        return;
    }

    rc = ngx_event_connect_peer(&rd->peer);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        ngx_http_vetting_redis_close(rd, "connect() failed");
        return;
    }

    c = rd->peer.connection;

    c->data = rd;
    c->log = &rd->log;
    c->read->log = &rd->log;
    c->write->log = &rd->log;
    c->read->handler = ngx_http_vetting_redis_read_handler;
    c->write->handler = ngx_http_vetting_redis_write_handler;

    rd->state = NGX_HTTP_VETTING_REDIS_CONNECTING;
    rd->out_pos = 0;
    rd->out_len = 0;

    ngx_http_vetting_redis_handshake(rd);

    if (rc == NGX_AGAIN) {
        ngx_add_timer(c->write, vmcf->redis_connect_timeout);
        return;
    }

    /* connected at once (a unix socket, for example) */

    ngx_http_vetting_redis_write_handler(c->write);
}


/*
 * The commands that open a connection, sent at once behind the connect:
 * AUTH and SELECT, a name that tells which worker it is, and then either
 * the function library (commands) or the subscription (events).
 */

static void
ngx_http_vetting_redis_handshake(ngx_http_vetting_redis_t *rd)
{
    ngx_http_vetting_cmd_t         cmd;
    ngx_http_vetting_main_conf_t  *vmcf;

    vmcf = ngx_http_vetting_vmcf;

    if (vmcf->redis_password.len) {
        ngx_http_vetting_cmd_init(&cmd);
        ngx_http_vetting_cmd_literal(&cmd, "AUTH");

        if (vmcf->redis_user.len) {
            ngx_http_vetting_cmd_str(&cmd, &vmcf->redis_user);
        }

        ngx_http_vetting_cmd_str(&cmd, &vmcf->redis_password);

        (void) ngx_http_vetting_redis_argv(rd, &cmd,
                                           ngx_http_vetting_redis_auth_handler,
                                           rd);
    }

    if (vmcf->redis_db && !rd->subscriber) {
        ngx_http_vetting_cmd_init(&cmd);
        ngx_http_vetting_cmd_literal(&cmd, "SELECT");
        ngx_http_vetting_cmd_printf(&cmd, "%i", vmcf->redis_db);

        (void) ngx_http_vetting_redis_argv(rd, &cmd,
                                           ngx_http_vetting_redis_ok_handler,
                                           (void *) "SELECT");
    }

    ngx_http_vetting_cmd_init(&cmd);
    ngx_http_vetting_cmd_literal(&cmd, "CLIENT");
    ngx_http_vetting_cmd_literal(&cmd, "SETNAME");
    ngx_http_vetting_cmd_printf(&cmd, "vetting-%P-%s", ngx_pid,
                                rd->subscriber ? "events" : "commands");

    (void) ngx_http_vetting_redis_argv(rd, &cmd,
                                       ngx_http_vetting_redis_ok_handler,
                                       NULL);

    ngx_http_vetting_cmd_init(&cmd);

    if (rd->subscriber) {
        ngx_http_vetting_cmd_literal(&cmd, "SUBSCRIBE");
        ngx_http_vetting_cmd_printf(&cmd, "%Vevents", &vmcf->redis_prefix);

        (void) ngx_http_vetting_redis_argv(rd, &cmd,
                                           ngx_http_vetting_redis_subscribed,
                                           rd);
        return;
    }

    ngx_http_vetting_cmd_literal(&cmd, "FUNCTION");
    ngx_http_vetting_cmd_literal(&cmd, "LOAD");
    ngx_http_vetting_cmd_literal(&cmd, "REPLACE");
    ngx_http_vetting_cmd_arg(&cmd, ngx_http_vetting_library,
                             sizeof(ngx_http_vetting_library) - 1);

    (void) ngx_http_vetting_redis_argv(rd, &cmd,
                                       ngx_http_vetting_redis_load_handler,
                                       rd);
}


/*
 * AUTH refused: the connection is closed and tried again later.  Said
 * once per outage: hiredis' reply holds Redis's own message, never the
 * password.
 */

static void
ngx_http_vetting_redis_auth_handler(redisReply *reply, void *data)
{
    ngx_http_vetting_redis_t  *rd = data;

    if (reply == NULL || reply->type != REDIS_REPLY_ERROR) {
        return;
    }

    if (rd->failures == 0) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "vetting: redis %V refused AUTH: \"%*s\"",
                      rd->peer.name, (size_t) ngx_min(reply->len, 200),
                      reply->str);
    }

    rd->auth_failed = 1;

    ngx_http_vetting_redis_close(rd, "AUTH refused");
}


/* a handshake step that must answer OK; data names it, NULL: optional */

static void
ngx_http_vetting_redis_ok_handler(redisReply *reply, void *data)
{
    if (reply == NULL || data == NULL
        || reply->type != REDIS_REPLY_ERROR)
    {
        return;
    }

    /* hiredis' reply holds Redis's own message, never our password */

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "vetting: redis refused %s: \"%*s\"", (char *) data,
                  (size_t) ngx_min(reply->len, 200), reply->str);

    ngx_http_vetting_redis_down("handshake refused");
}


static void
ngx_http_vetting_redis_load_handler(redisReply *reply, void *data)
{
    ngx_http_vetting_redis_t  *rd = data;

    if (reply == NULL) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {

        if (rd->failures == 0 && !rd->auth_failed) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "vetting: redis refused the vetting functions "
                          "(FUNCTION LOAD needs Redis 7): \"%*s\"",
                          (size_t) ngx_min(reply->len, 200), reply->str);
        }

        ngx_http_vetting_redis_close(rd, "FUNCTION LOAD failed");
        return;
    }

    if (rd->state != NGX_HTTP_VETTING_REDIS_HANDSHAKE) {
        return;
    }

    rd->state = NGX_HTTP_VETTING_REDIS_READY;
    rd->failures = 0;
    rd->auth_failed = 0;
    rd->log.log_level = ngx_cycle->log->log_level;
    ngx_http_vetting_connect_failed = 0;

    ngx_http_vetting_redis_up();

    ngx_http_vetting_redis_resync();

    ngx_post_event(&ngx_http_vetting_kick_ev, &ngx_posted_events);
}


static void
ngx_http_vetting_redis_subscribed(redisReply *reply, void *data)
{
    ngx_http_vetting_redis_t  *rd = data;

    if (reply == NULL) {
        return;
    }

    /* refused (a wrong password, say): try again later, as commands do */

    if (reply->type != REDIS_REPLY_ARRAY) {
        ngx_http_vetting_redis_close(rd, "SUBSCRIBE failed");
        return;
    }

    rd->state = NGX_HTTP_VETTING_REDIS_READY;
    rd->failures = 0;
    rd->auth_failed = 0;
    rd->log.log_level = ngx_cycle->log->log_level;

    /* what was published while this worker was not listening */

    ngx_http_vetting_redis_resync();
}


static void
ngx_http_vetting_redis_retry(ngx_event_t *ev)
{
    ngx_http_vetting_redis_t  *rd;

    rd = (ngx_http_vetting_redis_t *)
             ((u_char *) ev - offsetof(ngx_http_vetting_redis_t, retry));

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    ngx_http_vetting_redis_connect(rd);
}


/*
 * Closes a connection.  With a reason it failed: the breaker opens for
 * every worker, the commands waiting for a reply get none (their
 * requests decide by their rules' failure policy), and a reconnect is
 * scheduled with back-off.
 */

static void
ngx_http_vetting_redis_close(ngx_http_vetting_redis_t *rd,
    const char *reason)
{
    int64_t                        delay;
    ngx_queue_t                   *q;
    ngx_http_vetting_redis_cmd_t  *cmd;

    if (rd->peer.connection) {
        ngx_close_connection(rd->peer.connection);
        rd->peer.connection = NULL;
    }

    if (rd->reader) {
        vetting_resp_reader_free(rd->reader);
        rd->reader = NULL;
    }

    rd->state = NGX_HTTP_VETTING_REDIS_CLOSED;
    rd->out_pos = 0;
    rd->out_len = 0;

    if (reason) {
        rd->failures++;

        if (!rd->subscriber) {
            ngx_http_vetting_connect_failed = 1;
        }

        ngx_http_vetting_redis_down(reason);

        /* later attempts are quiet until one succeeds */

        rd->log.log_level = NGX_LOG_CRIT;
    }

    while (!ngx_queue_empty(&rd->pending)) {
        q = ngx_queue_head(&rd->pending);
        ngx_queue_remove(q);
        rd->npending--;

        cmd = ngx_queue_data(q, ngx_http_vetting_redis_cmd_t, queue);

        cmd->handler(NULL, cmd->data);
        ngx_free(cmd);
    }

    if (!rd->subscriber) {
        ngx_http_vetting_resyncing = 0;
        ngx_http_vetting_redis_wake();
    }

    if (reason == NULL || ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    delay = vetting_backoff(ngx_http_vetting_vmcf->redis_backoff_min,
                            ngx_http_vetting_vmcf->redis_backoff_max,
                            (unsigned) rd->failures, (uint32_t) ngx_pid);

    ngx_add_timer(&rd->retry, (ngx_msec_t) delay);
}


static ngx_int_t
ngx_http_vetting_redis_test_connect(ngx_connection_t *c)
{
    int        err;
    socklen_t  len;

    err = 0;
    len = sizeof(int);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len) == -1) {
        err = ngx_socket_errno;
    }

    if (err) {
        c->log->action = "connecting to redis";
        (void) ngx_connection_error(c, err, "connect() failed");
        c->log->action = "talking to redis";
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* sending */

static void
ngx_http_vetting_redis_write_handler(ngx_event_t *ev)
{
    ssize_t                        n;
    ngx_queue_t                   *q;
    ngx_connection_t              *c;
    ngx_http_vetting_redis_t      *rd;
    ngx_http_vetting_redis_cmd_t  *cmd;

    c = ev->data;
    rd = c->data;

    if (ev->timedout) {
        ngx_log_error(NGX_LOG_ERR, &rd->log, NGX_ETIMEDOUT,
                      "vetting: redis %V connect timed out",
                      rd->peer.name);
        ngx_http_vetting_redis_close(rd, "connect timed out");
        return;
    }

    if (rd->state == NGX_HTTP_VETTING_REDIS_CONNECTING) {

        if (ngx_http_vetting_redis_test_connect(c) != NGX_OK) {
            ngx_http_vetting_redis_close(rd, "connect() failed");
            return;
        }

        if (ev->timer_set) {
            ngx_del_timer(ev);
        }

        rd->state = NGX_HTTP_VETTING_REDIS_HANDSHAKE;

        /* the commands queued while connecting wait from now on */

        for (q = ngx_queue_head(&rd->pending);
             q != ngx_queue_sentinel(&rd->pending);
             q = ngx_queue_next(q))
        {
            cmd = ngx_queue_data(q, ngx_http_vetting_redis_cmd_t, queue);
            cmd->deadline = ngx_current_msec
                            + ngx_http_vetting_vmcf->redis_timeout;
        }

        if (rd->npending) {
            ngx_add_timer(c->read, ngx_http_vetting_vmcf->redis_timeout);
        }
    }

    while (rd->out_pos < rd->out_len) {

        n = c->send(c, rd->out + rd->out_pos, rd->out_len - rd->out_pos);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == NGX_ERROR) {
            ngx_http_vetting_redis_close(rd, "send() failed");
            return;
        }

        rd->out_pos += n;
    }

    if (rd->out_pos == rd->out_len) {
        rd->out_pos = 0;
        rd->out_len = 0;
    }

    if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
        ngx_http_vetting_redis_close(rd, "epoll failed");
        return;
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_http_vetting_redis_close(rd, "epoll failed");
    }
}


/*
 * Queues a formatted command and the handler of its reply.  The reply
 * comes in order: Redis answers the commands of a connection in the
 * order they were sent.
 */

static ngx_int_t
ngx_http_vetting_redis_append(ngx_http_vetting_redis_t *rd, u_char *data,
    size_t len, ngx_http_vetting_redis_handler_pt handler, void *hdata)
{
    u_char                        *p;
    size_t                         size;
    ngx_connection_t              *c;
    ngx_http_vetting_redis_cmd_t  *cmd;

    if (rd->out_len + len > rd->out_size) {

        if (rd->out_len + len > NGX_HTTP_VETTING_OUT_MAX) {
            return NGX_DECLINED;
        }

        size = ngx_max(rd->out_size * 2, 16384);

        while (size < rd->out_len + len) {
            size *= 2;
        }

        p = ngx_alloc(size, ngx_cycle->log);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (rd->out) {
            ngx_memcpy(p, rd->out + rd->out_pos, rd->out_len - rd->out_pos);
            ngx_free(rd->out);
        }

        rd->out_len -= rd->out_pos;
        rd->out_pos = 0;
        rd->out = p;
        rd->out_size = size;
    }

    cmd = ngx_alloc(sizeof(ngx_http_vetting_redis_cmd_t), ngx_cycle->log);
    if (cmd == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(rd->out + rd->out_len, data, len);
    rd->out_len += len;

    cmd->handler = handler;
    cmd->data = hdata;
    cmd->deadline = ngx_current_msec + ngx_http_vetting_vmcf->redis_timeout;

    ngx_queue_insert_tail(&rd->pending, &cmd->queue);
    rd->npending++;

    c = rd->peer.connection;

    if (!c->read->timer_set
        && rd->state != NGX_HTTP_VETTING_REDIS_CONNECTING)
    {
        ngx_add_timer(c->read, ngx_http_vetting_vmcf->redis_timeout);
    }

    /*
     * sent once this round of events is over, so that commands queued
     * together leave in one write
     */

    if (rd->state != NGX_HTTP_VETTING_REDIS_CONNECTING
        && !c->write->posted)
    {
        ngx_post_event(c->write, &ngx_posted_events);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_vetting_redis_argv(ngx_http_vetting_redis_t *rd,
    ngx_http_vetting_cmd_t *cmd, ngx_http_vetting_redis_handler_pt handler,
    void *data)
{
    long        len;
    char       *out;
    ngx_int_t   rc;

    if (cmd->overflow) {
        ngx_log_error(NGX_LOG_ALERT, ngx_cycle->log, 0,
                      "vetting: a redis command did not fit, not sent");
        return NGX_ERROR;
    }

    len = vetting_resp_command(&out, cmd->argc, cmd->argv, cmd->lens);
    if (len < 0) {
        return NGX_ERROR;
    }

    rc = ngx_http_vetting_redis_append(rd, (u_char *) out, (size_t) len,
                                       handler, data);
    free(out);

    return rc;
}


/* putting a command together */

void
ngx_http_vetting_cmd_init(ngx_http_vetting_cmd_t *cmd)
{
    cmd->argc = 0;
    cmd->pos = cmd->buf;
    cmd->overflow = 0;
}


void
ngx_http_vetting_cmd_arg(ngx_http_vetting_cmd_t *cmd, const void *data,
    size_t len)
{
    if (cmd->argc == NGX_HTTP_VETTING_ARGS_MAX) {
        cmd->overflow = 1;
        return;
    }

    cmd->argv[cmd->argc] = data;
    cmd->lens[cmd->argc] = len;
    cmd->argc++;
}


/* an argument printed into the command's own room */

void
ngx_http_vetting_cmd_printf(ngx_http_vetting_cmd_t *cmd, const char *fmt,
    ...)
{
    u_char   *p, *last;
    va_list   args;

    last = cmd->buf + sizeof(cmd->buf);

    va_start(args, fmt);
    p = ngx_vslprintf(cmd->pos, last, fmt, args);
    va_end(args);

    if (p == last) {
        cmd->overflow = 1;
        return;
    }

    ngx_http_vetting_cmd_arg(cmd, cmd->pos, p - cmd->pos);
    cmd->pos = p;
}


/* receiving */

static void
ngx_http_vetting_redis_read_handler(ngx_event_t *ev)
{
    u_char                         buf[16384];
    ssize_t                        n;
    ngx_queue_t                   *q;
    redisReply                    *reply;
    ngx_connection_t              *c;
    ngx_http_vetting_redis_t      *rd;
    ngx_http_vetting_redis_cmd_t  *cmd;

    c = ev->data;
    rd = c->data;

    if (ev->timedout) {
        ngx_log_error(NGX_LOG_ERR, &rd->log, NGX_ETIMEDOUT,
                      "vetting: redis %V did not answer within %M ms",
                      rd->peer.name, ngx_http_vetting_vmcf->redis_timeout);
        ngx_http_vetting_redis_close(rd, "command timed out");
        return;
    }

    for ( ;; ) {
        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0 || n == NGX_ERROR) {
            ngx_log_error(NGX_LOG_ERR, &rd->log, 0,
                          "vetting: redis %V closed the connection",
                          rd->peer.name);
            ngx_http_vetting_redis_close(rd, "connection closed");
            return;
        }

        if (vetting_resp_feed(rd->reader, (char *) buf, n) != VETTING_OK) {
            goto invalid;
        }

        for ( ;; ) {
            if (vetting_resp_next(rd->reader, &reply) != VETTING_OK) {
                goto invalid;
            }

            if (reply == NULL) {
                break;
            }

            if (rd->subscriber
                && rd->state == NGX_HTTP_VETTING_REDIS_READY
                && reply->type == REDIS_REPLY_ARRAY)
            {
                ngx_http_vetting_redis_message(rd, reply);
                vetting_resp_free(reply);
                continue;
            }

            if (ngx_queue_empty(&rd->pending)) {
                vetting_resp_free(reply);
                ngx_log_error(NGX_LOG_ERR, &rd->log, 0,
                              "vetting: redis %V sent a reply to nothing",
                              rd->peer.name);
                ngx_http_vetting_redis_close(rd, "unexpected reply");
                return;
            }

            q = ngx_queue_head(&rd->pending);
            ngx_queue_remove(q);
            rd->npending--;

            cmd = ngx_queue_data(q, ngx_http_vetting_redis_cmd_t, queue);

            cmd->handler(reply, cmd->data);

            ngx_free(cmd);
            vetting_resp_free(reply);

            if (rd->peer.connection == NULL) {

                /* a handler closed it */

                return;
            }
        }
    }

    if (ngx_queue_empty(&rd->pending)) {
        if (c->read->timer_set) {
            ngx_del_timer(c->read);
        }

    } else {
        q = ngx_queue_head(&rd->pending);
        cmd = ngx_queue_data(q, ngx_http_vetting_redis_cmd_t, queue);

        ngx_add_timer(c->read, (ngx_msec_int_t) (cmd->deadline
                                                - ngx_current_msec) > 0
                               ? cmd->deadline - ngx_current_msec : 1);
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_http_vetting_redis_close(rd, "epoll failed");
    }

    return;

invalid:

    ngx_log_error(NGX_LOG_ERR, &rd->log, 0,
                  "vetting: redis %V sent an invalid or oversized reply",
                  rd->peer.name);

    ngx_http_vetting_redis_close(rd, "invalid reply");
}


/* the breaker all workers share */

ngx_int_t
ngx_http_vetting_redis_available(void)
{
    ngx_http_vetting_shm_t  *shm;

    if (ngx_http_vetting_cmd == NULL
        || ngx_http_vetting_cmd->state != NGX_HTTP_VETTING_REDIS_READY)
    {
        return 0;
    }

    shm = ngx_http_vetting_vmcf->shm_zone->data;

    return shm->sh->down_until <= ngx_http_vetting_now();
}


ngx_str_t *
ngx_http_vetting_redis_state(void)
{
    if (ngx_http_vetting_cmd == NULL) {
        return &ngx_http_vetting_state_off;
    }

    if (ngx_http_vetting_redis_available()) {
        return &ngx_http_vetting_state_up;
    }

    if (ngx_http_vetting_cmd->state != NGX_HTTP_VETTING_REDIS_CLOSED
        && ngx_http_vetting_cmd->failures == 0)
    {
        return &ngx_http_vetting_state_connecting;
    }

    return &ngx_http_vetting_state_down;
}


static void
ngx_http_vetting_redis_up(void)
{
    ngx_uint_t               was;
    ngx_http_vetting_shm_t  *shm;

    shm = ngx_http_vetting_vmcf->shm_zone->data;

    ngx_shmtx_lock(&shm->shpool->mutex);

    was = shm->sh->down;
    shm->sh->down = 0;
    shm->sh->down_until = 0;
    shm->sh->failures = 0;

    ngx_shmtx_unlock(&shm->shpool->mutex);

    if (was) {
        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "vetting: redis %V is back; shared state resumes",
                      &ngx_http_vetting_vmcf->redis->name);
    }
}


/* logged once per outage by whichever worker saw it first */

static void
ngx_http_vetting_redis_down(const char *reason)
{
    int64_t                  now, delay;
    ngx_uint_t               was;
    ngx_http_vetting_shm_t  *shm;

    shm = ngx_http_vetting_vmcf->shm_zone->data;
    now = ngx_http_vetting_now();

    ngx_shmtx_lock(&shm->shpool->mutex);

    was = shm->sh->down;
    shm->sh->down = 1;

    if (shm->sh->down_until <= now) {
        shm->sh->failures++;

        delay = vetting_backoff(ngx_http_vetting_vmcf->redis_backoff_min,
                                ngx_http_vetting_vmcf->redis_backoff_max,
                                (unsigned) shm->sh->failures,
                                (uint32_t) ngx_pid);

        shm->sh->down_until = now + delay;
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);

    if (!was) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "vetting: redis %V is unavailable (%s); deciding "
                      "from the local mirror until it is back",
                      &ngx_http_vetting_vmcf->redis->name, reason);
    }
}


/* "*", or a tenant name as vetting_tenant takes it */

static ngx_uint_t
ngx_http_vetting_scope_valid(ngx_str_t *scope)
{
    u_char  *p;

    if (scope->len == 1 && scope->data[0] == '*') {
        return 1;
    }

    if (scope->len == 0 || scope->len > VETTING_TENANT_MAX) {
        return 0;
    }

    for (p = scope->data; p < scope->data + scope->len; p++) {
        if (!(isalnum(*p) || *p == '-' || *p == '_' || *p == '.')) {
            return 0;
        }
    }

    return 1;
}


/* suspensions: the full index, and what the channel tells */

static void
ngx_http_vetting_redis_resync(void)
{
    ngx_http_vetting_cmd_t         cmd;
    ngx_http_vetting_shm_t        *shm;
    ngx_http_vetting_redis_t      *rd;
    ngx_http_vetting_main_conf_t  *vmcf;

    rd = ngx_http_vetting_cmd;
    vmcf = ngx_http_vetting_vmcf;

    if (rd == NULL || ngx_http_vetting_resyncing
        || rd->state != NGX_HTTP_VETTING_REDIS_READY)
    {
        return;
    }

    shm = vmcf->shm_zone->data;

    ngx_http_vetting_cmd_init(&cmd);
    ngx_http_vetting_cmd_literal(&cmd, "HGETALL");
    ngx_http_vetting_cmd_printf(&cmd, "%Vindex", &vmcf->redis_prefix);

    /* what the channel changes from now on survives this sync */

    ngx_shmtx_lock(&shm->shpool->mutex);
    shm->sh->generation++;
    ngx_shmtx_unlock(&shm->shpool->mutex);

    if (ngx_http_vetting_redis_argv(rd, &cmd,
                                    ngx_http_vetting_redis_resync_handler,
                                    (void *) (uintptr_t)
                                    shm->sh->generation)
        == NGX_OK)
    {
        ngx_http_vetting_resyncing = 1;
    }
}


/* "<app> <scope>" -> "<since> <revoked> <state> <rule>" */

static void
ngx_http_vetting_redis_resync_handler(redisReply *reply, void *data)
{
    u_char                    *p, *last, *f[4];
    size_t                     i, j, n, flen[4];
    uint64_t                   generation;
    ngx_int_t                  since, revoked;
    ngx_http_vetting_shm_t    *shm;
    ngx_http_vetting_block_t   blk;

    generation = (uint64_t) (uintptr_t) data;
    shm = ngx_http_vetting_vmcf->shm_zone->data;

    ngx_http_vetting_resyncing = 0;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {

        if (reply) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "vetting: redis index of suspensions unreadable");
        }

        ngx_http_vetting_redis_wake();
        return;
    }

    for (i = 0; i + 1 < reply->elements; i += 2) {

        if (reply->element[i]->type != REDIS_REPLY_STRING
            || reply->element[i + 1]->type != REDIS_REPLY_STRING)
        {
            continue;
        }

        ngx_memzero(&blk, sizeof(ngx_http_vetting_block_t));

        p = (u_char *) reply->element[i]->str;
        last = p + reply->element[i]->len;

        blk.app.data = p;

        while (p < last && *p != ' ') {
            p++;
        }

        blk.app.len = p - blk.app.data;

        if (p == last) {
            continue;
        }

        blk.scope.data = p + 1;
        blk.scope.len = last - p - 1;

        p = (u_char *) reply->element[i + 1]->str;
        last = p + reply->element[i + 1]->len;

        for (j = 0; j < 4; j++) {
            f[j] = p;

            while (p < last && *p != ' ') {
                p++;
            }

            flen[j] = p - f[j];

            if (p < last) {
                p++;
            }
        }

        since = ngx_atoi(f[0], flen[0]);
        revoked = ngx_atoi(f[1], flen[1]);

        if (since == NGX_ERROR || revoked == NGX_ERROR
            || !vetting_client_id_valid(blk.app.data, blk.app.len)
            || !ngx_http_vetting_scope_valid(&blk.scope))
        {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "vetting: malformed suspension index entry "
                          "in redis, skipped");
            continue;
        }

        blk.since = since;
        blk.revoked = revoked;
        blk.confirmed = (flen[2] == 9
                         && ngx_strncmp(f[2], "confirmed", 9) == 0);
        blk.rule.data = f[3];
        blk.rule.len = flen[3];

        if (ngx_http_vetting_block_put(shm, &blk, generation, ngx_cycle->log)
            == NGX_OK)
        {
            ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                          "vetting: app \"%V\" is suspended in scope \"%V\" "
                          "(rule \"%V\")", &blk.app, &blk.scope, &blk.rule);
        }
    }

    n = reply->elements / 2;

    ngx_http_vetting_block_sweep(shm, generation);

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "vetting: %uz suspensions read from redis", n);

    ngx_http_vetting_redis_wake();
}


static void
ngx_http_vetting_redis_resync_timer(ngx_event_t *ev)
{
    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    ngx_http_vetting_redis_resync();

    ngx_add_timer(ev, ngx_http_vetting_vmcf->redis_resync);
}


/*
 *   block <app> <scope> <since> <revoked> <state> <rule>
 *   unblock <app> <scope> <revoked>
 *   reset <app>
 */

static void
ngx_http_vetting_redis_message(ngx_http_vetting_redis_t *rd,
    redisReply *reply)
{
    u_char                    *p, *last, *f[7];
    size_t                     i, n, flen[7];
    ngx_int_t                  since, revoked;
    ngx_http_vetting_shm_t    *shm;
    ngx_http_vetting_block_t   blk;

    if (reply->elements != 3
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[2]->type != REDIS_REPLY_STRING
        || reply->element[0]->len != 7
        || ngx_strncmp(reply->element[0]->str, "message", 7) != 0)
    {
        return;
    }

    shm = ngx_http_vetting_vmcf->shm_zone->data;

    p = (u_char *) reply->element[2]->str;
    last = p + reply->element[2]->len;

    for (n = 0; n < 7 && p < last; n++) {
        f[n] = p;

        while (p < last && *p != ' ') {
            p++;
        }

        flen[n] = p - f[n];

        if (p < last) {
            p++;
        }
    }

    for (i = n; i < 7; i++) {
        f[i] = last;
        flen[i] = 0;
    }

    ngx_memzero(&blk, sizeof(ngx_http_vetting_block_t));

    blk.app.data = f[1];
    blk.app.len = flen[1];

    if (!vetting_client_id_valid(blk.app.data, blk.app.len)) {
        goto malformed;
    }

    if (flen[0] == 5 && ngx_strncmp(f[0], "reset", 5) == 0) {
        ngx_http_vetting_counter_reset(shm, &blk.app);
        ngx_http_vetting_bucket_reset(shm, &blk.app);
        return;
    }

    blk.scope.data = f[2];
    blk.scope.len = flen[2];

    if (!ngx_http_vetting_scope_valid(&blk.scope)) {
        goto malformed;
    }

    if (flen[0] == 7 && ngx_strncmp(f[0], "unblock", 7) == 0) {
        revoked = ngx_atoi(f[3], flen[3]);

        ngx_http_vetting_block_clear(shm, &blk.app, &blk.scope, 1);

        if (revoked > 0) {
            blk.revoked = revoked;
            (void) ngx_http_vetting_block_put(shm, &blk,
                                              shm->sh->generation,
                                              ngx_cycle->log);
        }

        ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                      "vetting: app \"%V\" reinstated in scope \"%V\"",
                      &blk.app, &blk.scope);
        return;
    }

    if (!(flen[0] == 5 && ngx_strncmp(f[0], "block", 5) == 0)) {
        goto malformed;
    }

    since = ngx_atoi(f[3], flen[3]);
    revoked = ngx_atoi(f[4], flen[4]);

    if (since == NGX_ERROR || revoked == NGX_ERROR) {
        goto malformed;
    }

    blk.since = since;
    blk.revoked = revoked;
    blk.confirmed = (flen[5] == 9 && ngx_strncmp(f[5], "confirmed", 9) == 0);
    blk.rule.data = f[6];
    blk.rule.len = flen[6];

    if (ngx_http_vetting_block_put(shm, &blk, shm->sh->generation,
                                   ngx_cycle->log)
        == NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "vetting: app \"%V\" suspended in scope \"%V\" "
                      "(rule \"%V\"), as published by redis",
                      &blk.app, &blk.scope, &blk.rule);
    }

    return;

malformed:

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "vetting: malformed message on the redis channel, "
                  "ignored");
}


/*
 * Requests that wait for this gateway's first read of the suspensions
 * (the zone is new) go on once it is done or has failed.
 */

ngx_int_t
ngx_http_vetting_redis_synced(void)
{
    ngx_http_vetting_shm_t  *shm;

    if (ngx_http_vetting_vmcf == NULL) {
        return 1;
    }

    shm = ngx_http_vetting_vmcf->shm_zone->data;

    return shm->sh->synced != 0 || ngx_http_vetting_connect_failed
           || shm->sh->down_until > ngx_http_vetting_now();
}


static void
ngx_http_vetting_redis_wake(void)
{
    ngx_queue_t                *q;
    ngx_http_vetting_waiter_t  *w;

    while (!ngx_queue_empty(&ngx_http_vetting_sync_waiters)) {
        q = ngx_queue_head(&ngx_http_vetting_sync_waiters);
        ngx_queue_remove(q);

        w = ngx_queue_data(q, ngx_http_vetting_waiter_t, queue);
        w->queued = 0;

        ngx_http_vetting_waiter_handler(NULL, w);
    }
}


/* a request waits for Redis */

ngx_int_t
ngx_http_vetting_redis_call(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, ngx_http_vetting_resume_pt resume,
    ngx_uint_t index, ngx_http_vetting_cmd_t *cmd)
{
    ngx_pool_cleanup_t         *cln;
    ngx_http_vetting_waiter_t  *w;

    if (ngx_http_vetting_cmd == NULL) {
        return NGX_DECLINED;
    }

    if (cmd == NULL) {
        if (ngx_http_vetting_redis_synced()) {
            return NGX_DECLINED;
        }

    } else if (!ngx_http_vetting_redis_available()) {
        return NGX_DECLINED;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_DECLINED;
    }

    /* not from the request's pool: the reply may outlive the request */

    w = ngx_calloc(sizeof(ngx_http_vetting_waiter_t), r->connection->log);
    if (w == NULL) {
        return NGX_DECLINED;
    }

    w->request = r;
    w->resume = resume;
    w->index = index;

    cln->handler = ngx_http_vetting_waiter_cleanup;
    cln->data = w;

    if (cmd == NULL) {
        ngx_queue_insert_tail(&ngx_http_vetting_sync_waiters, &w->queue);
        w->queued = 1;

    } else if (ngx_http_vetting_redis_argv(ngx_http_vetting_cmd, cmd,
                                           ngx_http_vetting_waiter_handler,
                                           w)
               != NGX_OK)
    {
        w->replied = 1;
        return NGX_DECLINED;
    }

    ctx->waiting = 1;
    ctx->waiter_index = index;

    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_request_empty_handler;

    return NGX_AGAIN;
}


static void
ngx_http_vetting_waiter_handler(redisReply *reply, void *data)
{
    ngx_http_vetting_waiter_t  *w = data;

    ngx_int_t                rc;
    ngx_connection_t        *c;
    ngx_http_request_t      *r;
    ngx_http_vetting_ctx_t  *ctx;

    w->replied = 1;
    r = w->request;

    if (r == NULL) {

        /* the request ended first; its cleanup left this to us */

        ngx_free(w);
        return;
    }

    if (ngx_http_vetting_exiting) {

        /* the worker is going away: nothing more runs for the request */

        return;
    }

    c = r->connection;

    ctx = ngx_http_get_module_ctx(r, ngx_http_vetting_module);

    ctx->waiting = 0;
    ctx->waiter_index = w->index;

    rc = w->resume(r, ctx, reply);

    if (rc != NGX_OK) {
        ngx_http_finalize_request(r, rc);

    } else {
        r->write_event_handler = ngx_http_core_run_phases;
        ngx_http_core_run_phases(r);
    }

    ngx_http_run_posted_requests(c);
}


static void
ngx_http_vetting_waiter_cleanup(void *data)
{
    ngx_http_vetting_waiter_t  *w = data;

    if (w->queued) {
        ngx_queue_remove(&w->queue);
        ngx_free(w);
        return;
    }

    if (w->replied) {
        ngx_free(w);
        return;
    }

    w->request = NULL;
}


/* commands that no request waits for */

ngx_int_t
ngx_http_vetting_redis_send(ngx_http_vetting_cmd_t *cmd,
    ngx_http_vetting_redis_handler_pt handler, void *data)
{
    if (!ngx_http_vetting_redis_available()) {
        return NGX_DECLINED;
    }

    return ngx_http_vetting_redis_argv(ngx_http_vetting_cmd, cmd, handler,
                                       data);
}


/*
 * Commands that must reach Redis even if it is away now go through the
 * outbox in the zone: kept until Redis acknowledges them, sent again
 * after a failure, applied once (the functions remember event ids).
 */

static ngx_int_t
ngx_http_vetting_redis_put(ngx_uint_t kind, ngx_http_vetting_cmd_t *cmd,
    ngx_log_t *log)
{
    long        len;
    char       *out;
    ngx_int_t   rc;

    if (cmd->overflow) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "vetting: an event did not fit a redis command, lost");
        return NGX_ERROR;
    }

    len = vetting_resp_command(&out, cmd->argc, cmd->argv, cmd->lens);
    if (len < 0) {
        return NGX_ERROR;
    }

    rc = ngx_http_vetting_outbox_put(ngx_http_vetting_vmcf->shm_zone->data,
                                     kind, (u_char *) out, (size_t) len, log);
    free(out);

    if (rc == NGX_OK && !ngx_http_vetting_kick_ev.posted
        && ngx_http_vetting_redis_available())
    {
        ngx_post_event(&ngx_http_vetting_kick_ev, &ngx_posted_events);
    }

    return rc;
}


void
ngx_http_vetting_redis_kick(void)
{
    if (ngx_http_vetting_cmd && !ngx_http_vetting_kick_ev.posted) {
        ngx_post_event(&ngx_http_vetting_kick_ev, &ngx_posted_events);
    }
}


/* a learned credential, for every gateway: SET <key> <record> PX <ttl> */

void
ngx_http_vetting_redis_token(u_char *digest, ngx_http_vetting_token_t *tok,
    ngx_log_t *log)
{
    u_char                  hex[2 * VETTING_DIGEST_LEN];
    int64_t                 ms;
    ngx_http_vetting_cmd_t  cmd;

    if (ngx_http_vetting_vmcf == NULL) {
        return;
    }

    ms = tok->expires - ngx_http_vetting_now();
    if (ms <= 0) {
        return;
    }

    vetting_digest_hex(digest, hex);

    ngx_http_vetting_cmd_init(&cmd);
    ngx_http_vetting_cmd_literal(&cmd, "SET");
    ngx_http_vetting_cmd_printf(&cmd, "%Vtok:%*s",
                                &ngx_http_vetting_vmcf->redis_prefix,
                                sizeof(hex), hex);
    ngx_http_vetting_cmd_printf(&cmd, "%d %L %L %V %V %V", (int) tok->kind,
                                tok->issued, tok->expires,
                                tok->app.len ? &tok->app
                                             : &ngx_http_vetting_state_none,
                                tok->tenant.len ? &tok->tenant
                                             : &ngx_http_vetting_state_none,
                                tok->member.len ? &tok->member
                                             : &ngx_http_vetting_state_none);
    ngx_http_vetting_cmd_literal(&cmd, "PX");
    ngx_http_vetting_cmd_printf(&cmd, "%L", ms);

    (void) ngx_http_vetting_redis_put(NGX_HTTP_VETTING_OUT_PLAIN, &cmd, log);
}


/*
 * The arguments every function that may suspend an app takes, after its
 * own: app scope rule event count threshold window gateway policy
 * evidence.
 */

static void
ngx_http_vetting_redis_block_args(ngx_http_vetting_cmd_t *cmd,
    ngx_str_t *app, ngx_str_t *scope, ngx_str_t *rule, ngx_str_t *event,
    uint64_t count, uint64_t threshold, uint64_t window,
    ngx_str_t *evidence)
{
    ngx_http_vetting_main_conf_t  *vmcf;

    vmcf = ngx_http_vetting_vmcf;

    ngx_http_vetting_cmd_str(cmd, app);
    ngx_http_vetting_cmd_str(cmd, scope);
    ngx_http_vetting_cmd_str(cmd, rule);
    ngx_http_vetting_cmd_str(cmd, event);
    ngx_http_vetting_cmd_printf(cmd, "%uL", count);
    ngx_http_vetting_cmd_printf(cmd, "%uL", threshold);
    ngx_http_vetting_cmd_printf(cmd, "%uL", window);
    ngx_http_vetting_cmd_str(cmd, &vmcf->gateway);
    ngx_http_vetting_cmd_str(cmd, &vmcf->policy);
    ngx_http_vetting_cmd_str(cmd, evidence);
}


/* the keys a function that may suspend an app takes: susp index history */

static void
ngx_http_vetting_redis_suspension_keys(ngx_http_vetting_cmd_t *cmd,
    ngx_str_t *app, ngx_str_t *scope)
{
    ngx_str_t  *prefix;

    prefix = &ngx_http_vetting_vmcf->redis_prefix;

    ngx_http_vetting_cmd_printf(cmd, "%V{app:%V}:susp:%V", prefix, app,
                                scope);
    ngx_http_vetting_cmd_printf(cmd, "%Vindex", prefix);
    ngx_http_vetting_cmd_printf(cmd, "%V{app:%V}:history", prefix, app);
}


/* FCALL vt_block 3 <susp> <index> <history> <channel> <block args> */

void
ngx_http_vetting_redis_block(ngx_http_vetting_main_conf_t *vmcf,
    ngx_http_vetting_block_t *blk, ngx_http_vetting_rule_t *rule,
    uint64_t count, ngx_str_t *evidence, ngx_log_t *log)
{
    ngx_http_vetting_cmd_t  cmd;

    if (ngx_http_vetting_vmcf == NULL) {
        return;
    }

    ngx_http_vetting_cmd_init(&cmd);
    ngx_http_vetting_cmd_literal(&cmd, "FCALL");
    ngx_http_vetting_cmd_literal(&cmd, "vt_block");
    ngx_http_vetting_cmd_literal(&cmd, "3");
    ngx_http_vetting_redis_suspension_keys(&cmd, &blk->app, &blk->scope);
    ngx_http_vetting_cmd_printf(&cmd, "%Vevents", &vmcf->redis_prefix);
    ngx_http_vetting_redis_block_args(&cmd, &blk->app, &blk->scope,
                                      &rule->text,
                                      ngx_http_vetting_event_name(
                                          rule->event),
                                      count, rule->threshold, rule->window,
                                      evidence);

    (void) ngx_http_vetting_redis_put(NGX_HTTP_VETTING_OUT_BLOCK, &cmd, log);
}


/*
 * FCALL vt_members 5 <zset> <authorized> <susp> <index> <history>
 *   <member> <time> <window> <threshold> <action> <channel> <block args>
 */

void
ngx_http_vetting_redis_members(ngx_http_vetting_main_conf_t *vmcf,
    ngx_str_t *app, ngx_str_t *member, ngx_str_t *scope,
    ngx_http_vetting_rule_t *rule, int64_t now, ngx_log_t *log)
{
    u_char                    text[128];
    ngx_str_t                 evidence;
    ngx_http_vetting_cmd_t    cmd;
    ngx_http_vetting_rule_t   none;

    if (ngx_http_vetting_vmcf == NULL) {
        return;
    }

    if (rule == NULL) {
        ngx_memzero(&none, sizeof(ngx_http_vetting_rule_t));
        none.event = NGX_HTTP_VETTING_EV_MEMBERS;
        none.window = 86400 * 1000;
        none.action = NGX_HTTP_VETTING_LOG;
        ngx_str_set(&none.text, "members (no rule)");
        rule = &none;
    }

    ngx_http_vetting_cmd_init(&cmd);
    ngx_http_vetting_cmd_literal(&cmd, "FCALL");
    ngx_http_vetting_cmd_literal(&cmd, "vt_members");
    ngx_http_vetting_cmd_literal(&cmd, "5");
    ngx_http_vetting_cmd_printf(&cmd, "%V{app:%V}:members:%V:%M",
                                &vmcf->redis_prefix, app, scope,
                                rule->window);
    ngx_http_vetting_cmd_printf(&cmd, "%V{app:%V}:authorized",
                                &vmcf->redis_prefix, app);
    ngx_http_vetting_redis_suspension_keys(&cmd, app, scope);
    ngx_http_vetting_cmd_str(&cmd, member);
    ngx_http_vetting_cmd_printf(&cmd, "%L", now);
    ngx_http_vetting_cmd_printf(&cmd, "%M", rule->window);
    ngx_http_vetting_cmd_printf(&cmd, "%uL", rule->threshold);

    if (rule->action == NGX_HTTP_VETTING_BLOCK) {
        ngx_http_vetting_cmd_literal(&cmd, "block");

    } else {
        ngx_http_vetting_cmd_literal(&cmd, "count");
    }

    ngx_http_vetting_cmd_printf(&cmd, "%Vevents", &vmcf->redis_prefix);

    evidence.data = text;
    evidence.len = ngx_snprintf(text, sizeof(text), "%uL distinct members "
                                "authorized the app within %M ms on the "
                                "fleet", rule->threshold, rule->window)
                   - text;

    ngx_http_vetting_redis_block_args(&cmd, app, scope, &rule->text,
                                      ngx_http_vetting_event_name(
                                          NGX_HTTP_VETTING_EV_MEMBERS),
                                      rule->threshold, rule->threshold,
                                      rule->window, &evidence);

    (void) ngx_http_vetting_redis_put(NGX_HTTP_VETTING_OUT_MEMBERS, &cmd,
                                      log);
}


/* FCALL vt_audit 2 <seen> <stream> <id> <json> <maxlen> */

void
ngx_http_vetting_redis_audit(ngx_str_t *id, u_char *json, size_t len,
    ngx_log_t *log)
{
    ngx_http_vetting_cmd_t         cmd;
    ngx_http_vetting_main_conf_t  *vmcf;

    vmcf = ngx_http_vetting_vmcf;

    if (vmcf == NULL || vmcf->audit_stream == 0) {
        return;
    }

    ngx_http_vetting_cmd_init(&cmd);
    ngx_http_vetting_cmd_literal(&cmd, "FCALL");
    ngx_http_vetting_cmd_literal(&cmd, "vt_audit");
    ngx_http_vetting_cmd_literal(&cmd, "2");
    ngx_http_vetting_cmd_printf(&cmd, "%Vseen:%V", &vmcf->redis_prefix, id);
    ngx_http_vetting_cmd_printf(&cmd, "%Vaudit", &vmcf->redis_prefix);
    ngx_http_vetting_cmd_str(&cmd, id);
    ngx_http_vetting_cmd_arg(&cmd, json, len);
    ngx_http_vetting_cmd_printf(&cmd, "%ui", vmcf->audit_stream);

    (void) ngx_http_vetting_redis_put(NGX_HTTP_VETTING_OUT_AUDIT, &cmd, log);
}


/* the flush: counters first, then the outbox */

static void
ngx_http_vetting_redis_flush(ngx_event_t *ev)
{
    static ngx_http_vetting_flush_t  flushes[NGX_HTTP_VETTING_FLUSH_COUNTERS];
    static ngx_http_vetting_sent_t   sent[NGX_HTTP_VETTING_FLUSH_ENTRIES];
    static u_char                    buf[NGX_HTTP_VETTING_FLUSH_BYTES];

    u_char                         text[128];
    int64_t                        now, until;
    ngx_str_t                      app, scope, rule, evidence, *event;
    ngx_uint_t                     i, n, m;
    const char                    *tag;
    ngx_http_vetting_cmd_t         cmd;
    ngx_http_vetting_shm_t        *shm;
    ngx_http_vetting_flush_t      *f;
    ngx_http_vetting_sent_t       *s;
    ngx_http_vetting_main_conf_t  *vmcf;

    vmcf = ngx_http_vetting_vmcf;

    if (ev == &ngx_http_vetting_flush_ev
        && !(ngx_exiting || ngx_quit || ngx_terminate))
    {
        ngx_add_timer(ev, vmcf->redis_sync);
    }

    if (!ngx_http_vetting_redis_available()) {
        return;
    }

    shm = vmcf->shm_zone->data;
    now = ngx_http_vetting_now();
    until = now + 4 * (int64_t) vmcf->redis_timeout;

    n = ngx_http_vetting_counter_take(shm, flushes,
                                      NGX_HTTP_VETTING_FLUSH_COUNTERS, now,
                                      until);

    for (i = 0; i < n; i++) {
        f = ngx_alloc(sizeof(ngx_http_vetting_flush_t), ngx_cycle->log);
        if (f == NULL) {
            ngx_http_vetting_counter_done(shm, &flushes[i], 0, 0, now);
            continue;
        }

        *f = flushes[i];

        app.data = f->subject;
        app.len = f->subject_len;
        scope.data = f->scope;
        scope.len = f->scope_len;
        rule.data = f->rule;
        rule.len = f->rule_len;
        event = ngx_http_vetting_event_name(f->event);
        tag = (f->by == NGX_HTTP_VETTING_BY_APP) ? "app" : "addr";

        ngx_http_vetting_cmd_init(&cmd);
        ngx_http_vetting_cmd_literal(&cmd, "FCALL");
        ngx_http_vetting_cmd_literal(&cmd, "vt_count");
        ngx_http_vetting_cmd_literal(&cmd, "5");
        ngx_http_vetting_cmd_printf(&cmd, "%V{%s:%V}:c:%V:%uL:%V:%uL:%V",
                                    &vmcf->redis_prefix, tag, &app, event,
                                    f->window,
                                    ngx_http_vetting_action_name(f->action),
                                    f->threshold, &scope);
        ngx_http_vetting_cmd_printf(&cmd, "%V{%s:%V}:seen:%uxL-%uL",
                                    &vmcf->redis_prefix, tag, &app, f->boot,
                                    f->id);
        ngx_http_vetting_redis_suspension_keys(&cmd, &app, &scope);
        ngx_http_vetting_cmd_printf(&cmd, "%uxL-%uL", f->boot, f->id);
        ngx_http_vetting_cmd_printf(&cmd, "%uL", f->delta);
        ngx_http_vetting_cmd_printf(&cmd, "%uL", f->window);
        ngx_http_vetting_cmd_printf(&cmd, "%uL", f->threshold);

        /* only an app, never an address, is suspended */

        if (f->by == NGX_HTTP_VETTING_BY_APP
            && f->action == NGX_HTTP_VETTING_BLOCK)
        {
            ngx_http_vetting_cmd_literal(&cmd, "block");

        } else {
            ngx_http_vetting_cmd_literal(&cmd, "count");
        }

        ngx_http_vetting_cmd_printf(&cmd, "%Vevents", &vmcf->redis_prefix);

        evidence.data = text;
        evidence.len = ngx_snprintf(text, sizeof(text), "%V events of the "
                                    "app within %uL ms reached %uL on the "
                                    "fleet", event, f->window, f->threshold)
                       - text;

        ngx_http_vetting_redis_block_args(&cmd, &app, &scope, &rule, event,
                                          f->threshold, f->threshold,
                                          f->window, &evidence);

        if (ngx_http_vetting_redis_argv(ngx_http_vetting_cmd, &cmd,
                                        ngx_http_vetting_redis_count_handler,
                                        f)
            != NGX_OK)
        {
            ngx_http_vetting_counter_done(shm, f, 0, 0, now);
            ngx_free(f);
        }
    }

    m = ngx_http_vetting_outbox_take(shm, sent, NGX_HTTP_VETTING_FLUSH_ENTRIES,
                                     buf, sizeof(buf), now, until);

    for (i = 0; i < m; i++) {
        s = ngx_alloc(sizeof(ngx_http_vetting_sent_t)
                      + (sent[i].kind == NGX_HTTP_VETTING_OUT_MEMBERS
                         ? sent[i].len : 0),
                      ngx_cycle->log);
        if (s == NULL) {
            ngx_http_vetting_outbox_done(shm, &sent[i], 0);
            continue;
        }

        *s = sent[i];

        /* a members event keeps its command to report a suspension */

        if (s->kind == NGX_HTTP_VETTING_OUT_MEMBERS) {
            s->data = (u_char *) (s + 1);
            ngx_memcpy(s->data, sent[i].data, sent[i].len);

        } else {
            s->data = NULL;
        }

        if (ngx_http_vetting_redis_append(ngx_http_vetting_cmd, sent[i].data,
                                          sent[i].len,
                                          ngx_http_vetting_redis_outbox_handler,
                                          s)
            != NGX_OK)
        {
            ngx_http_vetting_outbox_done(shm, s, 0);
            ngx_free(s);
        }
    }

    if (n == NGX_HTTP_VETTING_FLUSH_COUNTERS
        || m == NGX_HTTP_VETTING_FLUSH_ENTRIES)
    {
        ngx_http_vetting_redis_kick();
    }
}


static ngx_int_t
ngx_http_vetting_redis_missing_function(redisReply *reply)
{
    if (reply->type != REDIS_REPLY_ERROR
        || reply->len < 22
        || ngx_strncmp(reply->str, "ERR Function not found", 22) != 0)
    {
        return 0;
    }

    /* someone flushed the functions: load them again */

    if (ngx_http_vetting_cmd
        && ngx_http_vetting_cmd->state == NGX_HTTP_VETTING_REDIS_READY)
    {
        ngx_http_vetting_cmd->state = NGX_HTTP_VETTING_REDIS_HANDSHAKE;
        ngx_http_vetting_redis_handshake(ngx_http_vetting_cmd);
    }

    return 1;
}


/* vt_count answered {count, suspended now, since} */

static void
ngx_http_vetting_redis_count_handler(redisReply *reply, void *data)
{
    ngx_http_vetting_flush_t  *f = data;

    long long                  count, created, since;
    ngx_str_t                  desc, scope, rule;
    vetting_audit_detail_t     details[2];
    ngx_http_vetting_shm_t    *shm;
    ngx_http_vetting_block_t   blk;

    shm = ngx_http_vetting_vmcf->shm_zone->data;

    if (reply == NULL || ngx_http_vetting_redis_missing_function(reply)) {
        ngx_http_vetting_counter_done(shm, f, 0, 0, ngx_http_vetting_now());
        ngx_free(f);
        return;
    }

    if (vetting_resp_array_integer(reply, 0, &count) != VETTING_OK
        || vetting_resp_array_integer(reply, 1, &created) != VETTING_OK
        || vetting_resp_array_integer(reply, 2, &since) != VETTING_OK)
    {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "vetting: redis refused a count: \"%*s\"",
                      (size_t) (reply->type == REDIS_REPLY_ERROR
                                ? ngx_min(reply->len, 200) : 0),
                      reply->str);

        /* a refusal does not change by sending the same again */

        (void) ngx_atomic_fetch_add(
                   (ngx_atomic_t *) &shm->sh->refused_by_redis, 1);

        ngx_http_vetting_counter_done(shm, f, 1, 0, ngx_http_vetting_now());
        ngx_free(f);
        return;
    }

    ngx_http_vetting_counter_done(shm, f, 1, (uint64_t) count,
                                  ngx_http_vetting_now());

    if (created) {
        ngx_memzero(&blk, sizeof(ngx_http_vetting_block_t));

        blk.app.data = f->subject;
        blk.app.len = f->subject_len;
        blk.scope.data = f->scope;
        blk.scope.len = f->scope_len;
        blk.since = since;
        blk.rule = *ngx_http_vetting_event_name(f->event);

        /* a suspension this gateway made itself is reported already */

        if (ngx_http_vetting_block_put(shm, &blk, shm->sh->generation,
                                       ngx_cycle->log)
            != NGX_OK)
        {
            ngx_free(f);
            return;
        }

        (void) ngx_atomic_fetch_add(&shm->sh->blocked, 1);

        scope = blk.scope;
        rule.data = f->rule;
        rule.len = f->rule_len;

        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "vetting: app \"%V\" suspended in scope \"%V\": rule "
                      "\"%V\" reached on the fleet (%L events)",
                      &blk.app, &scope, &rule, count);

        ngx_str_set(&desc, "app suspended pending security review");

        details[0].type = "rule";
        details[0].value.data = rule.data;
        details[0].value.len = rule.len;
        details[1].type = "policy";
        details[1].value.data = ngx_http_vetting_vmcf->policy.data;
        details[1].value.len = ngx_http_vetting_vmcf->policy.len;

        ngx_http_vetting_audit_block(ngx_cycle->log, ngx_http_vetting_vmcf,
                                     &blk, &desc, details, 2);
    }

    ngx_free(f);
}


static void
ngx_http_vetting_redis_outbox_handler(redisReply *reply, void *data)
{
    ngx_http_vetting_sent_t  *s = data;

    long long                   created, since, count;
    ngx_str_t                   desc;
    ngx_uint_t                  done;
    redisReader                *reader;
    redisReply                 *cmd;
    vetting_audit_detail_t      details[2];
    ngx_http_vetting_shm_t     *shm;
    ngx_http_vetting_block_t    blk;

    shm = ngx_http_vetting_vmcf->shm_zone->data;

    if (reply == NULL || ngx_http_vetting_redis_missing_function(reply)) {
        ngx_http_vetting_outbox_done(shm, s, 0);
        ngx_free(s);
        return;
    }

    done = 1;

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "vetting: redis refused an event (attempt %ui): "
                      "\"%*s\"", s->attempts,
                      (size_t) ngx_min(reply->len, 200), reply->str);

        /* a busy or loading Redis may take it later */

        if (s->attempts < NGX_HTTP_VETTING_ATTEMPTS_MAX
            && ((reply->len >= 4 && ngx_strncmp(reply->str, "BUSY", 4) == 0)
                || (reply->len >= 7
                    && ngx_strncmp(reply->str, "LOADING", 7) == 0)))
        {
            done = 0;
        }

        if (done) {
            (void) ngx_atomic_fetch_add(
                       (ngx_atomic_t *) &shm->sh->refused_by_redis, 1);
        }

        ngx_http_vetting_outbox_done(shm, s, done);
        ngx_free(s);
        return;
    }

    ngx_http_vetting_outbox_done(shm, s, 1);

    if (s->kind != NGX_HTTP_VETTING_OUT_MEMBERS
        || vetting_resp_array_integer(reply, 0, &count) != VETTING_OK
        || vetting_resp_array_integer(reply, 1, &created) != VETTING_OK
        || vetting_resp_array_integer(reply, 2, &since) != VETTING_OK
        || !created)
    {
        ngx_free(s);
        return;
    }

    /* this member's authorization suspended the app: report it */

    reader = vetting_resp_reader_create(64, 2, 65536);
    if (reader == NULL) {
        ngx_free(s);
        return;
    }

    cmd = NULL;

    if (vetting_resp_feed(reader, (char *) s->data, s->len) == VETTING_OK
        && vetting_resp_next(reader, &cmd) == VETTING_OK
        && cmd
        && cmd->type == REDIS_REPLY_ARRAY
        && cmd->elements == 24)
    {
        ngx_memzero(&blk, sizeof(ngx_http_vetting_block_t));

        blk.app.data = (u_char *) cmd->element[14]->str;
        blk.app.len = cmd->element[14]->len;
        blk.scope.data = (u_char *) cmd->element[15]->str;
        blk.scope.len = cmd->element[15]->len;
        blk.since = since;
        ngx_str_set(&blk.rule, "members");

        if (ngx_http_vetting_block_put(shm, &blk, shm->sh->generation,
                                       ngx_cycle->log)
            != NGX_OK)
        {
            goto done;
        }

        (void) ngx_atomic_fetch_add(&shm->sh->blocked, 1);

        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "vetting: app \"%V\" suspended in scope \"%V\": %L "
                      "distinct members authorized it (rule \"%*s\")",
                      &blk.app, &blk.scope, count,
                      cmd->element[16]->len, cmd->element[16]->str);

        ngx_str_set(&desc, "app suspended pending security review");

        details[0].type = "rule";
        details[0].value.data = (u_char *) cmd->element[16]->str;
        details[0].value.len = cmd->element[16]->len;
        details[1].type = "policy";
        details[1].value.data = ngx_http_vetting_vmcf->policy.data;
        details[1].value.len = ngx_http_vetting_vmcf->policy.len;

        ngx_http_vetting_audit_block(ngx_cycle->log, ngx_http_vetting_vmcf,
                                     &blk, &desc, details, 2);
    }

done:

    if (cmd) {
        vetting_resp_free(cmd);
    }

    vetting_resp_reader_free(reader);
    ngx_free(s);
}
