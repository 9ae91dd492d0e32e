
/*
 * Copyright (C) ngx_vetting_module authors
 *
 * The rules: rates (token buckets, shared through Redis by leases), the
 * counting of monitored events and what a rule does when its count
 * reaches the threshold (log, reject, block), member authorizations, and
 * the country check.
 */


#include "ngx_http_vetting_module.h"


static ngx_int_t ngx_http_vetting_lease_resume(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, redisReply *reply);
static void ngx_http_vetting_prefetch(ngx_http_request_t *r,
    ngx_http_vetting_rate_t *rate, ngx_str_t *subject, uint64_t want);
static void ngx_http_vetting_lease_command(ngx_http_request_t *r,
    ngx_http_vetting_rate_t *rate, ngx_str_t *subject, uint64_t want,
    ngx_http_vetting_cmd_t *cmd);
static ngx_str_t *ngx_http_vetting_rate_subject(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, ngx_http_vetting_rate_t *rate);
static void ngx_http_vetting_block_app(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, ngx_http_vetting_rule_t *rule,
    ngx_str_t *scope, uint64_t count);
static void ngx_http_vetting_rule_hit(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, ngx_http_vetting_rule_t *rule,
    ngx_str_t *scope, ngx_uint_t by, ngx_str_t *subject, uint64_t count);
static void ngx_http_vetting_dry_run(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, ngx_str_t *what);
static ngx_int_t ngx_http_vetting_rule_scope(ngx_http_vetting_rule_t *rule,
    ngx_http_vetting_ctx_t *ctx, ngx_str_t *scope);


/*
 * Where a rule counts for a request: globally ("*"), or in the tenant of
 * the location; NGX_DECLINED for a tenant rule where there is no tenant.
 */

static ngx_int_t
ngx_http_vetting_rule_scope(ngx_http_vetting_rule_t *rule,
    ngx_http_vetting_ctx_t *ctx, ngx_str_t *scope)
{
    if (!rule->tenant) {
        ngx_str_set(scope, NGX_HTTP_VETTING_GLOBAL);
        return NGX_OK;
    }

    if (ctx->tenant.len == 0) {
        return NGX_DECLINED;
    }

    *scope = ctx->tenant;

    return NGX_OK;
}


/* rules with action "reject": the offender is refused while over */

ngx_int_t
ngx_http_vetting_rejected(ngx_http_request_t *r, ngx_http_vetting_ctx_t *ctx,
    ngx_http_vetting_loc_conf_t *vlcf)
{
    int64_t                        now;
    ngx_str_t                      scope;
    ngx_uint_t                     i;
    ngx_http_vetting_rule_t       *rule;
    ngx_http_vetting_shm_t        *shm;
    ngx_http_vetting_main_conf_t  *vmcf;

    if (vlcf->rules == NULL) {
        return NGX_OK;
    }

    vmcf = ngx_http_get_module_main_conf(r, ngx_http_vetting_module);
    shm = vmcf->shm_zone->data;

    now = ngx_http_vetting_now();
    rule = vlcf->rules->elts;

    for (i = 0; i < vlcf->rules->nelts; i++) {

        if (rule[i].action != NGX_HTTP_VETTING_REJECT) {
            continue;
        }

        /* more members are only added by code exchanges */

        if (rule[i].event == NGX_HTTP_VETTING_EV_MEMBERS
            && !(ctx->endpoint == NGX_HTTP_VETTING_TOKEN
                 && ctx->grant == NGX_HTTP_VETTING_CODE))
        {
            continue;
        }

        if (ngx_http_vetting_rule_scope(&rule[i], ctx, &scope) != NGX_OK) {
            continue;
        }

        if ((ctx->app.len
             && ngx_http_vetting_counter_get(shm, NGX_HTTP_VETTING_BY_APP,
                                             &ctx->app, &scope, &rule[i], now)
                >= rule[i].threshold)
            || ngx_http_vetting_counter_get(shm, NGX_HTTP_VETTING_BY_ADDRESS,
                                            &ctx->address, &scope, &rule[i],
                                            now)
               >= rule[i].threshold)
        {
            ctx->rule_text = rule[i].text;

            return ngx_http_vetting_refuse(r, ctx, NGX_HTTP_VETTING_R_RULE,
                                 (char *) ngx_http_vetting_event_name(
                                              rule[i].event)->data);
        }
    }

    return NGX_OK;
}


/* country of the client address, from the MaxMind DB */

ngx_int_t
ngx_http_vetting_country(ngx_http_request_t *r, ngx_http_vetting_ctx_t *ctx,
    ngx_http_vetting_loc_conf_t *vlcf)
{
    ngx_str_t                     *cc;
    ngx_uint_t                     i;
    ngx_http_vetting_main_conf_t  *vmcf;

    vmcf = ngx_http_get_module_main_conf(r, ngx_http_vetting_module);

    if (vmcf->geo == NULL || vlcf->countries == NULL) {
        return NGX_OK;
    }

    ngx_http_vetting_geo(r, ctx);

    if (!ctx->geo_known) {

        if (vlcf->country_unknown) {
            return NGX_OK;
        }

    } else {
        cc = vlcf->countries->elts;

        for (i = 0; i < vlcf->countries->nelts; i++) {
            if (cc[i].data[0] == (u_char) ctx->country[0]
                && cc[i].data[1] == (u_char) ctx->country[1])
            {
                return NGX_OK;
            }
        }
    }

    ngx_http_vetting_count(r, ctx, NGX_HTTP_VETTING_EV_COUNTRY);

    return ngx_http_vetting_refuse(r, ctx, NGX_HTTP_VETTING_R_COUNTRY,
                                   "country");
}


/*
 * Looks the client address up once per request: for the check, and for
 * $vetting_country also where the check is off or an earlier check
 * refused the request.
 */

void
ngx_http_vetting_geo(ngx_http_request_t *r, ngx_http_vetting_ctx_t *ctx)
{
    vetting_geo_rc_e               rc;
    ngx_http_vetting_main_conf_t  *vmcf;

    if (ctx->geo_done) {
        return;
    }

    ctx->geo_done = 1;

    vmcf = ngx_http_get_module_main_conf(r, ngx_http_vetting_module);

    if (vmcf->geo == NULL) {
        return;
    }

    rc = vetting_geo_lookup(vmcf->geo, r->connection->sockaddr,
                            ctx->country);

    if (rc == VETTING_GEO_FOUND) {
        ctx->geo_known = 1;
        return;
    }

    ctx->country[0] = '\0';

    if (rc == VETTING_GEO_ERROR) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "vetting: country lookup of \"%V\" failed in \"%V\"",
                      &ctx->address, &vmcf->geo_file);
    }
}


/*
 * Rates.  Each vetting_rate applies to the proven app, or to the client
 * address.  With Redis, requests are admitted from leases of a shared
 * token bucket, so most requests never wait for Redis; only a request
 * that finds the lease spent asks for the next one.
 */

ngx_int_t
ngx_http_vetting_rates(ngx_http_request_t *r, ngx_http_vetting_ctx_t *ctx,
    ngx_http_vetting_loc_conf_t *vlcf)
{
    int64_t                        now;
    ngx_int_t                      rc;
    ngx_str_t                     *subject;
    ngx_uint_t                     shared;
    ngx_http_vetting_cmd_t         cmd;
    ngx_http_vetting_shm_t        *shm;
    ngx_http_vetting_rate_t       *rate;
    ngx_http_vetting_take_t        take;
    ngx_http_vetting_main_conf_t  *vmcf;

    if (vlcf->rates == NULL) {
        return NGX_OK;
    }

    vmcf = ngx_http_get_module_main_conf(r, ngx_http_vetting_module);
    shm = vmcf->shm_zone->data;

    for ( /* void */ ; ctx->rate_index < vlcf->rates->nelts;
         ctx->rate_index++)
    {
        rate = (ngx_http_vetting_rate_t *) vlcf->rates->elts
               + ctx->rate_index;

        subject = ngx_http_vetting_rate_subject(r, ctx, rate);
        if (subject == NULL) {
            continue;
        }

        if (ctx->rate_pending) {

            /* back from Redis with the answer for this rate */

            ctx->rate_pending = 0;
            rc = ctx->rate_rc;
            take.state = ctx->rate_state;

        } else {
            now = ngx_http_vetting_now();

            shared = 0;

            if (vmcf->redis) {
                if (ngx_http_vetting_redis_available()) {
                    shared = 1;

                } else if (rate->fail_closed) {
                    return ngx_http_vetting_refuse(r, ctx,
                                             NGX_HTTP_VETTING_R_UNAVAILABLE,
                                             "rate");
                }
            }

            ngx_http_vetting_bucket_take(shm, rate, subject, shared, now,
                                         &take, r->connection->log);
            rc = take.rc;

            if (rc == NGX_OK && take.want) {
                ngx_http_vetting_prefetch(r, rate, subject, take.want);
            }

            if (rc == NGX_AGAIN) {
                ngx_http_vetting_lease_command(r, rate, subject, take.want,
                                               &cmd);

                ctx->rate = rate;

                rc = ngx_http_vetting_redis_call(r, ctx,
                                                 ngx_http_vetting_lease_resume,
                                                 ctx->rate_index, &cmd);
                if (rc == NGX_AGAIN) {
                    return NGX_AGAIN;
                }

                /* Redis went away just now */

                if (rate->fail_closed) {
                    rc = NGX_ERROR;

                } else {
                    ngx_http_vetting_bucket_take(shm, rate, subject, 0, now,
                                                 &take, r->connection->log);
                    rc = take.rc;
                }
            }
        }

        if (rc == NGX_OK) {
            continue;
        }

        if (rc == NGX_ERROR) {
            return ngx_http_vetting_refuse(r, ctx,
                                           NGX_HTTP_VETTING_R_UNAVAILABLE,
                                           "rate");
        }

        ctx->rate = rate;
        ctx->rate_state = take.state;

        if (rate->dry_run) {
            ngx_http_vetting_dry_run(r, ctx, &rate->text);
            continue;
        }

        ngx_http_vetting_count(r, ctx, NGX_HTTP_VETTING_EV_RATE);

        return ngx_http_vetting_refuse(r, ctx, NGX_HTTP_VETTING_R_RATE,
                                       "rate");
    }

    return NGX_OK;
}


static ngx_str_t *
ngx_http_vetting_rate_subject(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, ngx_http_vetting_rate_t *rate)
{
    if (rate->per == NGX_HTTP_VETTING_BY_ADDRESS) {
        return &ctx->address;
    }

    /* only an app the server proved is limited by its name */

    if (ctx->identity == NGX_HTTP_VETTING_ID_PROVEN) {
        return &ctx->app;
    }

    return NULL;
}


/* FCALL vt_lease 1 <key> <rate> <burst> <want> */

static void
ngx_http_vetting_lease_command(ngx_http_request_t *r,
    ngx_http_vetting_rate_t *rate, ngx_str_t *subject, uint64_t want,
    ngx_http_vetting_cmd_t *cmd)
{
    ngx_http_vetting_main_conf_t  *vmcf;

    vmcf = ngx_http_get_module_main_conf(r, ngx_http_vetting_module);

    ngx_http_vetting_cmd_init(cmd);
    ngx_http_vetting_cmd_literal(cmd, "FCALL");
    ngx_http_vetting_cmd_literal(cmd, "vt_lease");
    ngx_http_vetting_cmd_literal(cmd, "1");
    ngx_http_vetting_cmd_printf(cmd, "%V{%s:%V}:rl:%V", &vmcf->redis_prefix,
                                rate->per == NGX_HTTP_VETTING_BY_APP
                                ? "app" : "addr",
                                subject, &rate->id);
    ngx_http_vetting_cmd_printf(cmd, "%uL", rate->rate);
    ngx_http_vetting_cmd_printf(cmd, "%uL", rate->burst);
    ngx_http_vetting_cmd_printf(cmd, "%uL", want);
}


/* Redis answered {granted, remaining, retry ms}, or failed (NULL) */

static ngx_int_t
ngx_http_vetting_lease_resume(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, redisReply *reply)
{
    long long                      granted, remaining, retry;
    ngx_str_t                     *subject;
    ngx_http_vetting_shm_t        *shm;
    ngx_http_vetting_rate_t       *rate;
    ngx_http_vetting_take_t        take;
    ngx_http_vetting_main_conf_t  *vmcf;

    vmcf = ngx_http_get_module_main_conf(r, ngx_http_vetting_module);
    shm = vmcf->shm_zone->data;

    rate = ctx->rate;
    subject = ngx_http_vetting_rate_subject(r, ctx, rate);

    ctx->rate_pending = 1;

    if (reply
        && vetting_resp_array_integer(reply, 0, &granted) == VETTING_OK
        && vetting_resp_array_integer(reply, 1, &remaining) == VETTING_OK
        && vetting_resp_array_integer(reply, 2, &retry) == VETTING_OK)
    {
        ctx->rate_rc = ngx_http_vetting_bucket_lease(shm, rate, subject,
                                                     granted, remaining,
                                                     retry,
                                                     ngx_http_vetting_now(),
                                                     &ctx->rate_state);
        return NGX_OK;
    }

    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "vetting: redis refused vt_lease: \"%*s\"",
                      (size_t) ngx_min(reply->len, 200), reply->str);
    }

    if (rate->fail_closed) {
        ctx->rate_rc = NGX_ERROR;
        return NGX_OK;
    }

    ngx_http_vetting_bucket_take(shm, rate, subject, 0,
                                 ngx_http_vetting_now(), &take,
                                 r->connection->log);

    ctx->rate_rc = take.rc;
    ctx->rate_state = take.state;

    return NGX_OK;
}


typedef struct {
    ngx_http_vetting_rate_t       *rate;
    ngx_http_vetting_shm_t        *shm;
    ngx_str_t                      subject;
    u_char                         data[1];
} ngx_http_vetting_prefetch_t;


static void
ngx_http_vetting_prefetch_handler(redisReply *reply, void *data)
{
    ngx_http_vetting_prefetch_t  *pf = data;

    long long  granted, remaining, retry;

    if (reply
        && vetting_resp_array_integer(reply, 0, &granted) == VETTING_OK
        && vetting_resp_array_integer(reply, 1, &remaining) == VETTING_OK
        && vetting_resp_array_integer(reply, 2, &retry) == VETTING_OK)
    {
        (void) ngx_http_vetting_bucket_lease(pf->shm, pf->rate, &pf->subject,
                                             granted, remaining, retry,
                                             ngx_http_vetting_now(), NULL);
    }

    ngx_free(pf);
}


/* the lease runs low: ask for the next one without making anyone wait */

static void
ngx_http_vetting_prefetch(ngx_http_request_t *r,
    ngx_http_vetting_rate_t *rate, ngx_str_t *subject, uint64_t want)
{
    ngx_http_vetting_cmd_t         cmd;
    ngx_http_vetting_prefetch_t   *pf;
    ngx_http_vetting_main_conf_t  *vmcf;

    vmcf = ngx_http_get_module_main_conf(r, ngx_http_vetting_module);

    ngx_http_vetting_lease_command(r, rate, subject, want, &cmd);

    pf = ngx_alloc(sizeof(ngx_http_vetting_prefetch_t) + subject->len,
                   r->connection->log);
    if (pf == NULL) {
        return;
    }

    pf->rate = rate;
    pf->shm = vmcf->shm_zone->data;
    pf->subject.data = pf->data;
    pf->subject.len = subject->len;
    ngx_memcpy(pf->data, subject->data, subject->len);

    if (ngx_http_vetting_redis_send(&cmd, ngx_http_vetting_prefetch_handler,
                                    pf)
        != NGX_OK)
    {
        ngx_free(pf);
    }
}


/*
 * Counts one event of a request for the rules that watch it: against
 * the app when the server proved it, against the client address
 * otherwise, so that naming an app never pushes it toward a threshold.
 */

void
ngx_http_vetting_count(ngx_http_request_t *r, ngx_http_vetting_ctx_t *ctx,
    ngx_uint_t event)
{
    int64_t                        now;
    uint64_t                       count;
    ngx_str_t                      scope, *subject;
    ngx_uint_t                     i, by, first;
    ngx_http_vetting_rule_t       *rule;
    ngx_http_vetting_loc_conf_t   *vlcf;
    ngx_http_vetting_main_conf_t  *vmcf;

    if (ctx->counted & (1 << event)) {
        return;
    }

    ctx->counted |= 1 << event;

    vlcf = ngx_http_get_module_loc_conf(r, ngx_http_vetting_module);

    if (vlcf->rules == NULL) {
        return;
    }

    vmcf = ngx_http_get_module_main_conf(r, ngx_http_vetting_module);

    if (event != NGX_HTTP_VETTING_EV_UNKNOWN
        && ctx->identity == NGX_HTTP_VETTING_ID_PROVEN)
    {
        by = NGX_HTTP_VETTING_BY_APP;
        subject = &ctx->app;

    } else {
        by = NGX_HTTP_VETTING_BY_ADDRESS;
        subject = &ctx->address;
    }

    now = ngx_http_vetting_now();
    rule = vlcf->rules->elts;

    for (i = 0; i < vlcf->rules->nelts; i++) {

        if (rule[i].event != event) {
            continue;
        }

        if (ngx_http_vetting_rule_scope(&rule[i], ctx, &scope) != NGX_OK) {
            continue;
        }

        count = ngx_http_vetting_counter_add(vmcf->shm_zone->data, by,
                                             subject, &scope, &rule[i], 1,
                                             vmcf->redis != NULL, now,
                                             &first, r->connection->log);
        if (first) {
            ngx_http_vetting_rule_hit(r, ctx, &rule[i], &scope, by, subject,
                                      count);
        }
    }
}


/* a rule's count reached its threshold */

static void
ngx_http_vetting_rule_hit(ngx_http_request_t *r, ngx_http_vetting_ctx_t *ctx,
    ngx_http_vetting_rule_t *rule, ngx_str_t *scope, ngx_uint_t by,
    ngx_str_t *subject, uint64_t count)
{
    ngx_uint_t  level;

    level = ngx_http_vetting_log_level(r);

    switch (rule->action) {

    case NGX_HTTP_VETTING_LOG:
        ngx_log_error(level, r->connection->log, 0,
                      "vetting: rule \"%V\" reached by %s \"%V\" "
                      "(%uL events), dry run",
                      &rule->text,
                      by == NGX_HTTP_VETTING_BY_APP ? "app" : "client",
                      subject, count);
        ngx_http_vetting_dry_run(r, ctx, &rule->text);
        break;

    case NGX_HTTP_VETTING_REJECT:
        ngx_log_error(level, r->connection->log, 0,
                      "vetting: rule \"%V\" reached by %s \"%V\" "
                      "(%uL events), refusing it while over",
                      &rule->text,
                      by == NGX_HTTP_VETTING_BY_APP ? "app" : "client",
                      subject, count);
        break;

    default: /* NGX_HTTP_VETTING_BLOCK */

        if (by != NGX_HTTP_VETTING_BY_APP) {
            ngx_log_error(level, r->connection->log, 0,
                          "vetting: rule \"%V\" reached by unidentified "
                          "client \"%V\" (%uL events); only apps are "
                          "suspended", &rule->text, subject, count);
            break;
        }

        ngx_http_vetting_block_app(r, ctx, rule, scope, count);
        break;
    }
}


/* a log-only rule or a dry-run rate matched: noted, not enforced */

static void
ngx_http_vetting_dry_run(ngx_http_request_t *r, ngx_http_vetting_ctx_t *ctx,
    ngx_str_t *what)
{
    u_char     *p;
    ngx_str_t   desc;

    p = ngx_pnalloc(r->pool, ctx->dry_run.len + 1 + what->len);
    if (p == NULL) {
        return;
    }

    desc.data = p;

    if (ctx->dry_run.len) {
        p = ngx_cpymem(p, ctx->dry_run.data, ctx->dry_run.len);
        *p++ = ',';
    }

    p = ngx_cpymem(p, what->data, what->len);

    ctx->dry_run.data = desc.data;
    ctx->dry_run.len = p - desc.data;

    ngx_str_set(&desc, "dry run: a rule matched and was not enforced");

    ngx_http_vetting_audit(r, ctx, VETTING_AUDIT_DRY_RUN, &desc, NULL, 0);
}


/*
 * Suspends an app from this gateway's own counts: at once in the zone,
 * and in Redis (vt_block), which tells every other gateway.  A count of
 * this gateway's proven events alone reaching the threshold is enough
 * evidence: the fleet's count can only be higher.
 */

static void
ngx_http_vetting_block_app(ngx_http_request_t *r, ngx_http_vetting_ctx_t *ctx,
    ngx_http_vetting_rule_t *rule, ngx_str_t *scope, uint64_t count)
{
    u_char                        *p;
    ngx_str_t                      evidence, desc;
    vetting_audit_detail_t         details[4];
    ngx_http_vetting_block_t       blk;
    ngx_http_vetting_main_conf_t  *vmcf;

    vmcf = ngx_http_get_module_main_conf(r, ngx_http_vetting_module);

    ngx_memzero(&blk, sizeof(ngx_http_vetting_block_t));

    blk.app = ctx->app;
    blk.scope = *scope;
    blk.since = ngx_http_vetting_now();
    blk.rule = *ngx_http_vetting_event_name(rule->event);

    if (ngx_http_vetting_block_put(vmcf->shm_zone->data, &blk, 0,
                                   r->connection->log)
        != NGX_OK)
    {
        return;
    }

    (void) ngx_atomic_fetch_add(&((ngx_http_vetting_shm_t *)
                                  vmcf->shm_zone->data)->sh->blocked, 1);

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "vetting: app \"%V\" suspended in scope \"%V\": rule "
                  "\"%V\" reached (%uL events)",
                  &ctx->app, scope, &rule->text, count);

    p = ngx_pnalloc(r->pool, 512);
    if (p == NULL) {
        return;
    }

    evidence.data = p;
    evidence.len = ngx_snprintf(p, 512,
                                "%uL %V events in %M ms (threshold %uL), "
                                "last: %V %V from %V",
                                count,
                                ngx_http_vetting_event_name(rule->event),
                                rule->window, rule->threshold,
                                &r->method_name, &r->uri, &ctx->address)
                   - p;

    ngx_str_set(&desc, "app suspended pending security review");

    details[0].type = "rule";
    details[0].value.data = rule->text.data;
    details[0].value.len = rule->text.len;
    details[1].type = "scope";
    details[1].value.data = scope->data;
    details[1].value.len = scope->len;
    details[2].type = "evidence";
    details[2].value.data = evidence.data;
    details[2].value.len = evidence.len;
    details[3].type = "policy";
    details[3].value.data = vmcf->policy.data;
    details[3].value.len = vmcf->policy.len;

    ngx_http_vetting_audit_block(r->connection->log, vmcf, &blk, &desc,
                                 details, 4);

    if (vmcf->redis) {
        ngx_http_vetting_redis_block(vmcf, &blk, rule, count, &evidence,
                                     r->connection->log);
    }
}


/*
 * A successful authorization-code exchange: one member authorized the
 * app.  Counted once per member per window, here and (vt_members) on
 * the whole fleet; Redis also keeps every member who ever authorized
 * the app, for the notifications a confirmed block sends.
 */

void
ngx_http_vetting_member_authorized(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx)
{
    int64_t                        now;
    uint64_t                       count;
    ngx_str_t                      scope;
    ngx_uint_t                     i, first, sent;
    ngx_http_vetting_rule_t       *rule;
    ngx_http_vetting_loc_conf_t   *vlcf;
    ngx_http_vetting_main_conf_t  *vmcf;

    vlcf = ngx_http_get_module_loc_conf(r, ngx_http_vetting_module);
    vmcf = ngx_http_get_module_main_conf(r, ngx_http_vetting_module);

    now = ngx_http_vetting_now();
    sent = 0;

    rule = vlcf->rules ? vlcf->rules->elts : NULL;

    for (i = 0; vlcf->rules && i < vlcf->rules->nelts; i++) {

        if (rule[i].event != NGX_HTTP_VETTING_EV_MEMBERS) {
            continue;
        }

        if (ngx_http_vetting_rule_scope(&rule[i], ctx, &scope) != NGX_OK) {
            continue;
        }

        if (vmcf->redis) {
            ngx_http_vetting_redis_members(vmcf, &ctx->app, &ctx->member,
                                           &scope, &rule[i], now,
                                           r->connection->log);
            sent = 1;
        }

        if (!ngx_http_vetting_member_seen(vmcf->shm_zone->data, &ctx->app,
                                          &ctx->member, &scope, &rule[i],
                                          now, r->connection->log))
        {
            continue;
        }

        count = ngx_http_vetting_counter_add(vmcf->shm_zone->data,
                                             NGX_HTTP_VETTING_BY_APP,
                                             &ctx->app, &scope, &rule[i], 1,
                                             0, now, &first,
                                             r->connection->log);
        if (first) {
            ngx_http_vetting_rule_hit(r, ctx, &rule[i], &scope,
                                      NGX_HTTP_VETTING_BY_APP, &ctx->app,
                                      count);
        }
    }

    if (vmcf->redis && !sent) {

        /* no rule counts members here: Redis still keeps who authorized */

        ngx_str_set(&scope, NGX_HTTP_VETTING_GLOBAL);
        ngx_http_vetting_redis_members(vmcf, &ctx->app, &ctx->member, &scope,
                                       NULL, now, r->connection->log);
    }
}
