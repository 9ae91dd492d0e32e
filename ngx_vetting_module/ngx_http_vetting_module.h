
/*
 * Copyright (C) ngx_vetting_module authors
 */


#ifndef _NGX_HTTP_VETTING_MODULE_H_INCLUDED_
#define _NGX_HTTP_VETTING_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <hiredis/hiredis.h>

#include "vetting.h"
#include "vetting_geo.h"
#include "vetting_json.h"
#include "vetting_limit.h"
#include "vetting_request.h"
#include "vetting_resp.h"
#include "vetting_token.h"


/* what a location is */
#define NGX_HTTP_VETTING_OFF           0
#define NGX_HTTP_VETTING_AUTHORIZE     1
#define NGX_HTTP_VETTING_TOKEN         2
#define NGX_HTTP_VETTING_FHIR          3
#define NGX_HTTP_VETTING_STATUS        4

/* how well the app behind a request is known */
#define NGX_HTTP_VETTING_ID_NONE       0
#define NGX_HTTP_VETTING_ID_CLAIMED    1   /* named by the request only */
#define NGX_HTTP_VETTING_ID_PROVEN     2   /* proven by the server */

/* rule events */
#define NGX_HTTP_VETTING_EV_WRITE      0
#define NGX_HTTP_VETTING_EV_RATE       1
#define NGX_HTTP_VETTING_EV_MEMBERS    2
#define NGX_HTTP_VETTING_EV_COUNTRY    3
#define NGX_HTTP_VETTING_EV_UNKNOWN    4
#define NGX_HTTP_VETTING_EV_MAX        5

/* rule actions */
#define NGX_HTTP_VETTING_LOG           0
#define NGX_HTTP_VETTING_REJECT        1
#define NGX_HTTP_VETTING_BLOCK         2

/* what a counter, a bucket or a block is kept for */
#define NGX_HTTP_VETTING_BY_APP        0
#define NGX_HTTP_VETTING_BY_ADDRESS    1

/* kinds of learned credentials */
#define NGX_HTTP_VETTING_ACCESS        1
#define NGX_HTTP_VETTING_REFRESH       2
#define NGX_HTTP_VETTING_CODE          3
#define NGX_HTTP_VETTING_UNKNOWN       4   /* negative cache entry */

/* the refusals the module answers with */
#define NGX_HTTP_VETTING_R_WRITE       1
#define NGX_HTTP_VETTING_R_METHOD      2
#define NGX_HTTP_VETTING_R_OVERRIDE    3
#define NGX_HTTP_VETTING_R_RATE        4
#define NGX_HTTP_VETTING_R_BLOCKED     5
#define NGX_HTTP_VETTING_R_REVOKED     6
#define NGX_HTTP_VETTING_R_COUNTRY     7
#define NGX_HTTP_VETTING_R_RULE        8
#define NGX_HTTP_VETTING_R_TOKEN       9   /* malformed credentials */
#define NGX_HTTP_VETTING_R_SCHEME      10  /* not a Bearer token */
#define NGX_HTTP_VETTING_R_UNAVAILABLE 11  /* redis away, fail=closed */
#define NGX_HTTP_VETTING_R_BODY        12  /* unreadable request body */

/* the scope of a global block */
#define NGX_HTTP_VETTING_GLOBAL        "*"

/* bounds of what the module reads from requests and responses */
#define NGX_HTTP_VETTING_FORM_MAX      65536
#define NGX_HTTP_VETTING_BUNDLE_MAX    1048576
#define NGX_HTTP_VETTING_RESPONSE_MAX  1048576
#define NGX_HTTP_VETTING_DEPTH_MAX     64

/* a Redis command built on the stack: arguments, and room for them */
#define NGX_HTTP_VETTING_ARGS_MAX      24
#define NGX_HTTP_VETTING_CMD_MAX       2048

/* what an outbox entry is, for the handling of its reply */
#define NGX_HTTP_VETTING_OUT_PLAIN     0
#define NGX_HTTP_VETTING_OUT_BLOCK     1
#define NGX_HTTP_VETTING_OUT_MEMBERS   2
#define NGX_HTTP_VETTING_OUT_AUDIT     3


typedef struct {
    ngx_str_t                    id;        /* policy name */
    uint64_t                     rate;      /* millionths r/s */
    uint64_t                     burst;
    uint64_t                     window;    /* s, for RateLimit-Policy */
    ngx_uint_t                   per;
    ngx_str_t                    text;      /* as written, for evidence */
    unsigned                     exact:1;
    unsigned                     fail_closed:1;
    unsigned                     dry_run:1;
} ngx_http_vetting_rate_t;


typedef struct {
    ngx_uint_t                   event;
    ngx_uint_t                   action;
    uint64_t                     threshold;
    ngx_msec_t                   window;
    ngx_str_t                    text;      /* as written, for evidence */
    unsigned                     tenant:1;
    unsigned                     fail_closed:1;
} ngx_http_vetting_rule_t;


typedef struct {
    ngx_shm_zone_t              *shm_zone;
    ngx_str_t                    gateway;
    ngx_open_file_t             *audit_file;

    ngx_msec_t                   token_lifetime;
    ngx_msec_t                   refresh_lifetime;
    ngx_msec_t                   code_lifetime;

    ngx_addr_t                  *redis;
    ngx_str_t                    redis_user;
    ngx_str_t                    redis_password;
    ngx_int_t                    redis_db;
    ngx_str_t                    redis_prefix;
    ngx_msec_t                   redis_connect_timeout;
    ngx_msec_t                   redis_timeout;
    ngx_msec_t                   redis_sync;
    ngx_msec_t                   redis_resync;
    ngx_msec_t                   redis_backoff_min;
    ngx_msec_t                   redis_backoff_max;
    ngx_uint_t                   audit_stream;  /* max length, 0: off */

    vetting_geo_t               *geo;
    ngx_str_t                    geo_file;

    /* every rule of the configuration, for the policy record */
    ngx_str_t                    policy;
    ngx_array_t                  policy_rules;  /* ngx_str_t */

    ngx_flag_t                   used;
} ngx_http_vetting_main_conf_t;


typedef struct {
    ngx_uint_t                   endpoint;
    ngx_str_t                    base;
    ngx_str_t                    tenant;
    ngx_uint_t                   write_status;
    ngx_array_t                 *read_ops;     /* ngx_str_t */
    u_char                      *reads;        /* as vetting_fhir_classify() */
    ngx_flag_t                   batch_reads;
    ngx_uint_t                   override;
    ngx_array_t                 *rates;        /* ngx_http_vetting_rate_t */
    ngx_array_t                 *rules;        /* ngx_http_vetting_rule_t */
    ngx_array_t                 *countries;    /* ngx_str_t */
    ngx_flag_t                   country_unknown;
    ngx_uint_t                   log_level;
} ngx_http_vetting_loc_conf_t;


/* shared memory */

typedef struct {
    ngx_rbtree_t                 rbtree;
    ngx_rbtree_node_t            sentinel;
    ngx_queue_t                  lru;

    ngx_rbtree_t                 blocks;
    ngx_rbtree_node_t            blocks_sentinel;
    ngx_queue_t                  blocks_list;
    ngx_uint_t                   nblocks;

    ngx_queue_t                  outbox;
    ngx_queue_t                  outbox_kinds[4];   /* by OUT_* kind */
    ngx_uint_t                   outbox_n;
    size_t                       outbox_size;
    ngx_uint_t                   outbox_lost;
    ngx_uint_t                   refused_by_redis;

    ngx_queue_t                  dirty;        /* counters to sync */

    uint64_t                     boot;
    uint64_t                     seq;

    /* redis state shared by the workers: a circuit breaker */
    int64_t                      down_until;
    ngx_uint_t                   failures;
    ngx_uint_t                   down;         /* logged as down */
    int64_t                      synced;       /* last full sync, ms */
    uint64_t                     generation;

    /* decisions, for the status endpoint */
    ngx_atomic_uint_t            passed;
    ngx_atomic_uint_t            refused;
    ngx_atomic_uint_t            blocked;
} ngx_http_vetting_shctx_t;


typedef struct {
    ngx_http_vetting_shctx_t    *sh;
    ngx_slab_pool_t             *shpool;
} ngx_http_vetting_shm_t;


/* a learned credential, or a negative entry */
typedef struct {
    u_char                       kind;
    int64_t                      issued;
    int64_t                      expires;
    ngx_str_t                    app;
    ngx_str_t                    member;
    ngx_str_t                    tenant;
} ngx_http_vetting_token_t;


/* a suspension or a revocation, as mirrored from Redis */
typedef struct {
    ngx_str_t                    app;
    ngx_str_t                    scope;
    int64_t                      since;        /* 0: not suspended */
    int64_t                      revoked;      /* 0: nothing revoked */
    ngx_str_t                    rule;
    unsigned                     confirmed:1;
} ngx_http_vetting_block_t;


/* state of a rate for one subject, as the decision needs it */
typedef struct {
    ngx_int_t                    rc;           /* NGX_OK, NGX_DECLINED,
                                                  NGX_AGAIN: ask redis */
    vetting_bucket_state_t       state;
    uint64_t                     want;         /* lease to ask for */
} ngx_http_vetting_take_t;


/*
 * A Redis command being put together: each argument points into buf, or
 * at data that lives until the command is formatted.  An argument that
 * does not fit marks the whole command overflowed.
 */
typedef struct {
    int                          argc;
    const char                  *argv[NGX_HTTP_VETTING_ARGS_MAX];
    size_t                       lens[NGX_HTTP_VETTING_ARGS_MAX];
    u_char                      *pos;
    unsigned                     overflow:1;
    u_char                       buf[NGX_HTTP_VETTING_CMD_MAX];
} ngx_http_vetting_cmd_t;


/* a batch of counted events on its way to Redis */
typedef struct {
    uint64_t                     id;
    uint64_t                     boot;
    uint64_t                     delta;
    uint64_t                     window;
    uint64_t                     threshold;
    ngx_uint_t                   by;
    ngx_uint_t                   event;
    ngx_uint_t                   action;
    size_t                       scope_len;
    size_t                       subject_len;
    size_t                       rule_len;
    u_char                       scope[VETTING_TENANT_MAX];
    u_char                       subject[VETTING_APP_MAX];
    u_char                       rule[128];
} ngx_http_vetting_flush_t;


/* an outbox entry on its way to Redis */
typedef struct {
    void                        *entry;
    uint64_t                     id;
    ngx_uint_t                   kind;
    ngx_uint_t                   attempts;
    u_char                      *data;
    size_t                       len;
} ngx_http_vetting_sent_t;


/* per request */

typedef struct ngx_http_vetting_ctx_s    ngx_http_vetting_ctx_t;
typedef struct ngx_http_vetting_waiter_s ngx_http_vetting_waiter_t;

typedef ngx_int_t (*ngx_http_vetting_resume_pt)(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, redisReply *reply);


typedef void (*ngx_http_vetting_redis_handler_pt)(redisReply *reply,
    void *data);


/* a request waiting for Redis; not allocated from the request's pool */
struct ngx_http_vetting_waiter_s {
    ngx_http_request_t          *request;
    ngx_http_vetting_resume_pt   resume;
    ngx_uint_t                   index;        /* which lookup or rate */
    ngx_queue_t                  queue;        /* waiting for the sync */
    unsigned                     replied:1;
    unsigned                     queued:1;
};


struct ngx_http_vetting_ctx_s {
    ngx_uint_t                   step;
    ngx_uint_t                   endpoint;

    ngx_str_t                    app;
    ngx_str_t                    member;
    ngx_str_t                    tenant;
    ngx_uint_t                   identity;
    int64_t                      issued;       /* of the credential used */

    u_char                       digest[VETTING_DIGEST_LEN];
    u_char                       grant_digest[VETTING_DIGEST_LEN];
    ngx_str_t                    address;      /* normalised client address */

    vetting_fhir_request_t       fhir;

    ngx_uint_t                   refusal;      /* NGX_HTTP_VETTING_R_* */
    ngx_str_t                    rule;         /* what decided */
    ngx_str_t                    rule_text;    /* the rule as written */
    ngx_str_t                    description;
    ngx_str_t                    dry_run;      /* log-only rules that hit */
    ngx_str_t                    body;
    ngx_uint_t                   status;
    ngx_uint_t                   counted;      /* events, a bit each */

    ngx_uint_t                   rate_index;   /* next vetting_rate */
    ngx_http_vetting_rate_t     *rate;
    vetting_bucket_state_t       rate_state;
    ngx_int_t                    rate_rc;

    ngx_uint_t                   waiter_index;

    vetting_token_parser_t      *parser;
    ngx_uint_t                   grant;        /* CODE or REFRESH */

    char                         country[4];

    unsigned                     done:1;
    unsigned                     has_token:1;
    unsigned                     has_grant:1;
    unsigned                     token_seen:1;
    unsigned                     unknown_token:1;
    unsigned                     body_read:1;
    unsigned                     body_wait:1;
    unsigned                     basic:1;
    unsigned                     waiting:1;
    unsigned                     rate_pending:1;
    unsigned                     override:1;
    unsigned                     override_header:1;
    unsigned                     geo_done:1;
    unsigned                     geo_known:1;
    unsigned                     learn:1;
    unsigned                     learned:1;
};


extern ngx_module_t  ngx_http_vetting_module;


/* ngx_http_vetting_module.c */
int64_t ngx_http_vetting_now(void);
ngx_str_t *ngx_http_vetting_event_name(ngx_uint_t event);
ngx_str_t *ngx_http_vetting_action_name(ngx_uint_t action);
ngx_uint_t ngx_http_vetting_log_level(ngx_http_request_t *r);
ngx_int_t ngx_http_vetting_refuse(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, ngx_uint_t refusal, const char *rule);

/* ngx_http_vetting_rules.c */
ngx_int_t ngx_http_vetting_rejected(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, ngx_http_vetting_loc_conf_t *vlcf);
ngx_int_t ngx_http_vetting_country(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, ngx_http_vetting_loc_conf_t *vlcf);
void ngx_http_vetting_geo(ngx_http_request_t *r, ngx_http_vetting_ctx_t *ctx);
ngx_int_t ngx_http_vetting_rates(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, ngx_http_vetting_loc_conf_t *vlcf);
void ngx_http_vetting_count(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, ngx_uint_t event);
void ngx_http_vetting_member_authorized(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx);

/* ngx_http_vetting_shm.c */
ngx_int_t ngx_http_vetting_init_zone(ngx_shm_zone_t *shm_zone, void *data);
ngx_int_t ngx_http_vetting_token_get(ngx_http_vetting_shm_t *shm,
    u_char *digest, ngx_http_vetting_token_t *tok, ngx_pool_t *pool,
    int64_t now);
void ngx_http_vetting_token_put(ngx_http_vetting_shm_t *shm, u_char *digest,
    ngx_http_vetting_token_t *tok, ngx_log_t *log);
ngx_int_t ngx_http_vetting_block_get(ngx_http_vetting_shm_t *shm,
    ngx_str_t *app, ngx_str_t *tenant, ngx_http_vetting_block_t *blk);
ngx_int_t ngx_http_vetting_block_put(ngx_http_vetting_shm_t *shm,
    ngx_http_vetting_block_t *blk, uint64_t generation, ngx_log_t *log);
void ngx_http_vetting_block_clear(ngx_http_vetting_shm_t *shm,
    ngx_str_t *app, ngx_str_t *scope, ngx_uint_t revocation);
void ngx_http_vetting_block_sweep(ngx_http_vetting_shm_t *shm,
    uint64_t generation);
ngx_uint_t ngx_http_vetting_blocks_list(ngx_http_vetting_shm_t *shm,
    ngx_pool_t *pool, ngx_array_t *out);
void ngx_http_vetting_bucket_take(ngx_http_vetting_shm_t *shm,
    ngx_http_vetting_rate_t *rate, ngx_str_t *subject, ngx_uint_t shared,
    int64_t now, ngx_http_vetting_take_t *take, ngx_log_t *log);
ngx_int_t ngx_http_vetting_bucket_lease(ngx_http_vetting_shm_t *shm,
    ngx_http_vetting_rate_t *rate, ngx_str_t *subject, int64_t granted,
    int64_t remaining, int64_t retry, int64_t now,
    vetting_bucket_state_t *st);
void ngx_http_vetting_bucket_reset(ngx_http_vetting_shm_t *shm,
    ngx_str_t *app);
uint64_t ngx_http_vetting_counter_add(ngx_http_vetting_shm_t *shm,
    ngx_uint_t by, ngx_str_t *subject, ngx_str_t *scope,
    ngx_http_vetting_rule_t *rule, uint64_t delta, ngx_uint_t shared,
    int64_t now, ngx_uint_t *first, ngx_log_t *log);
uint64_t ngx_http_vetting_counter_get(ngx_http_vetting_shm_t *shm,
    ngx_uint_t by, ngx_str_t *subject, ngx_str_t *scope,
    ngx_http_vetting_rule_t *rule, int64_t now);
void ngx_http_vetting_counter_reset(ngx_http_vetting_shm_t *shm,
    ngx_str_t *app);
ngx_uint_t ngx_http_vetting_member_seen(ngx_http_vetting_shm_t *shm,
    ngx_str_t *app, ngx_str_t *member, ngx_str_t *scope,
    ngx_http_vetting_rule_t *rule, int64_t now, ngx_log_t *log);
ngx_uint_t ngx_http_vetting_counter_take(ngx_http_vetting_shm_t *shm,
    ngx_http_vetting_flush_t *out, ngx_uint_t n, int64_t now, int64_t until);
void ngx_http_vetting_counter_done(ngx_http_vetting_shm_t *shm,
    ngx_http_vetting_flush_t *f, ngx_uint_t ok, uint64_t remote,
    int64_t now);
ngx_int_t ngx_http_vetting_outbox_put(ngx_http_vetting_shm_t *shm,
    ngx_uint_t kind, u_char *cmd, size_t len, ngx_log_t *log);
ngx_uint_t ngx_http_vetting_outbox_take(ngx_http_vetting_shm_t *shm,
    ngx_http_vetting_sent_t *out, ngx_uint_t n, u_char *buf, size_t size,
    int64_t now, int64_t until);
void ngx_http_vetting_outbox_done(ngx_http_vetting_shm_t *shm,
    ngx_http_vetting_sent_t *s, ngx_uint_t done);
uint64_t ngx_http_vetting_next_id(ngx_http_vetting_shm_t *shm);

/* ngx_http_vetting_redis.c */
ngx_int_t ngx_http_vetting_redis_init_process(ngx_cycle_t *cycle);
void ngx_http_vetting_redis_exit_process(ngx_cycle_t *cycle);
ngx_int_t ngx_http_vetting_redis_available(void);
ngx_str_t *ngx_http_vetting_redis_state(void);
ngx_int_t ngx_http_vetting_redis_synced(void);
ngx_int_t ngx_http_vetting_redis_call(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, ngx_http_vetting_resume_pt resume,
    ngx_uint_t index, ngx_http_vetting_cmd_t *cmd);
ngx_int_t ngx_http_vetting_redis_send(ngx_http_vetting_cmd_t *cmd,
    ngx_http_vetting_redis_handler_pt handler, void *data);
void ngx_http_vetting_cmd_init(ngx_http_vetting_cmd_t *cmd);
void ngx_http_vetting_cmd_arg(ngx_http_vetting_cmd_t *cmd, const void *data,
    size_t len);
void ngx_http_vetting_cmd_printf(ngx_http_vetting_cmd_t *cmd,
    const char *fmt, ...);
void ngx_http_vetting_redis_kick(void);

#define ngx_http_vetting_cmd_literal(cmd, s)                                 \
    ngx_http_vetting_cmd_arg(cmd, s, sizeof(s) - 1)
#define ngx_http_vetting_cmd_str(cmd, s)                                     \
    ngx_http_vetting_cmd_arg(cmd, (s)->data, (s)->len)

void ngx_http_vetting_redis_token(u_char *digest,
    ngx_http_vetting_token_t *tok, ngx_log_t *log);
void ngx_http_vetting_redis_block(ngx_http_vetting_main_conf_t *vmcf,
    ngx_http_vetting_block_t *blk, ngx_http_vetting_rule_t *rule,
    uint64_t count, ngx_str_t *evidence, ngx_log_t *log);
void ngx_http_vetting_redis_members(ngx_http_vetting_main_conf_t *vmcf,
    ngx_str_t *app, ngx_str_t *member, ngx_str_t *scope,
    ngx_http_vetting_rule_t *rule, int64_t now, ngx_log_t *log);
void ngx_http_vetting_redis_audit(ngx_str_t *id, u_char *json, size_t len,
    ngx_log_t *log);

/* ngx_http_vetting_filter.c */
ngx_int_t ngx_http_vetting_filter_init(ngx_conf_t *cf);

/* ngx_http_vetting_audit.c */
void ngx_http_vetting_audit(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, vetting_audit_kind_e kind,
    ngx_str_t *description, vetting_audit_detail_t *details,
    ngx_uint_t ndetails);
void ngx_http_vetting_audit_block(ngx_log_t *log,
    ngx_http_vetting_main_conf_t *vmcf, ngx_http_vetting_block_t *blk,
    ngx_str_t *description, vetting_audit_detail_t *details,
    ngx_uint_t ndetails);


#endif /* _NGX_HTTP_VETTING_MODULE_H_INCLUDED_ */
