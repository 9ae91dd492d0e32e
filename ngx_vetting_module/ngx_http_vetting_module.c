
/*
 * Copyright (C) ngx_vetting_module authors
 *
 * Vets third-party apps in front of a FHIR Patient Access API and its
 * OAuth 2.0 / SMART authorization server: who is calling (app, member),
 * what may pass (no writes, allowed countries, rates), and which apps
 * are suspended, on every gateway at once.
 */


#include "ngx_http_vetting_module.h"


#define NGX_HTTP_VETTING_STEP_START     0
#define NGX_HTTP_VETTING_STEP_SYNC      1
#define NGX_HTTP_VETTING_STEP_GRANT     2
#define NGX_HTTP_VETTING_STEP_DECIDE    3
#define NGX_HTTP_VETTING_STEP_RATE      4

#define NGX_HTTP_VETTING_OVERRIDE_REJECT  0
#define NGX_HTTP_VETTING_OVERRIDE_STRIP   1

/* the answer to a request whose decision could not be made */
#define NGX_HTTP_VETTING_RETRY_AFTER    "1"

/* refusal log lines a worker writes per second, at most */
#define NGX_HTTP_VETTING_LOG_BURST      50


static ngx_int_t ngx_http_vetting_handler(ngx_http_request_t *r);
static ngx_http_vetting_ctx_t *ngx_http_vetting_get_ctx(
    ngx_http_request_t *r);
static ngx_http_vetting_ctx_t *ngx_http_vetting_create_ctx(
    ngx_http_request_t *r, ngx_http_vetting_loc_conf_t *vlcf);
static void ngx_http_vetting_ctx_cleanup(void *data);
static ngx_int_t ngx_http_vetting_run(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, ngx_http_vetting_loc_conf_t *vlcf);
static ngx_int_t ngx_http_vetting_read_body(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx);
static void ngx_http_vetting_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_vetting_body(ngx_http_request_t *r, size_t max,
    ngx_str_t *body);
static ngx_int_t ngx_http_vetting_identify_authorize(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx);
static ngx_int_t ngx_http_vetting_identify_token(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx);
static size_t ngx_http_vetting_base64_lenient(u_char *dst, u_char *src,
    size_t len, ngx_uint_t url);
static ngx_int_t ngx_http_vetting_basic_client(ngx_http_request_t *r,
    ngx_str_t *value, char *out, size_t size, size_t *len);
static ngx_int_t ngx_http_vetting_assertion_client(ngx_http_request_t *r,
    u_char *jwt, size_t jwt_len, char *out, size_t size, size_t *len);
static ngx_int_t ngx_http_vetting_identify_fhir(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, ngx_http_vetting_loc_conf_t *vlcf);
static ngx_int_t ngx_http_vetting_form_token(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, u_char *data, size_t len);
static ngx_int_t ngx_http_vetting_lookup_token(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, u_char *digest);
static ngx_int_t ngx_http_vetting_token_resume(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, redisReply *reply);
static void ngx_http_vetting_use_token(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, ngx_http_vetting_token_t *tok);
static ngx_int_t ngx_http_vetting_sync_resume(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, redisReply *reply);
static ngx_int_t ngx_http_vetting_decide(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, ngx_http_vetting_loc_conf_t *vlcf);
static ngx_int_t ngx_http_vetting_check_fhir(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, ngx_http_vetting_loc_conf_t *vlcf);
static ngx_int_t ngx_http_vetting_override(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, ngx_http_vetting_loc_conf_t *vlcf);
static ngx_int_t ngx_http_vetting_send(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, ngx_uint_t status, ngx_str_t *type,
    u_char *body, size_t len);
static ngx_int_t ngx_http_vetting_set_header(ngx_http_request_t *r,
    const char *name, u_char *value, size_t len);
static void ngx_http_vetting_log_refusal(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, ngx_http_vetting_loc_conf_t *vlcf);
static ngx_int_t ngx_http_vetting_status(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx);
static ngx_int_t ngx_http_vetting_address(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx);
static ngx_int_t ngx_http_vetting_redact_request_line(ngx_http_request_t *r);
static ngx_int_t ngx_http_vetting_copy(ngx_http_request_t *r,
    ngx_str_t *dst, u_char *src, size_t len);

static ngx_int_t ngx_http_vetting_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_vetting_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_vetting_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_vetting_init_process(ngx_cycle_t *cycle);
static void ngx_http_vetting_exit_process(ngx_cycle_t *cycle);
static void *ngx_http_vetting_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_vetting_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_vetting_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_vetting_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static ngx_uint_t ngx_http_vetting_geo_probe(vetting_geo_t *geo);
static void ngx_http_vetting_cleanup_geo(void *data);

static char *ngx_http_vetting_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_vetting_audit_log(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_vetting_token_lifetime(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_vetting_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_vetting_redis_backoff(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_vetting_audit_stream(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_vetting_geoip(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_vetting_endpoint(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_vetting_tenant(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_vetting_read_operations(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_vetting_rate(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_vetting_rule(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_vetting_countries(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_vetting_write_status(ngx_conf_t *cf, void *post,
    void *data);
static ngx_int_t ngx_http_vetting_text(ngx_conf_t *cf, ngx_str_t *text);


static ngx_conf_enum_t  ngx_http_vetting_override_modes[] = {
    { ngx_string("reject"), NGX_HTTP_VETTING_OVERRIDE_REJECT },
    { ngx_string("strip"), NGX_HTTP_VETTING_OVERRIDE_STRIP },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_vetting_log_levels[] = {
    { ngx_string("info"), NGX_LOG_INFO },
    { ngx_string("notice"), NGX_LOG_NOTICE },
    { ngx_string("warn"), NGX_LOG_WARN },
    { ngx_string("error"), NGX_LOG_ERR },
    { ngx_null_string, 0 }
};


static ngx_conf_enum_t  ngx_http_vetting_unknown_answers[] = {
    { ngx_string("allow"), 1 },
    { ngx_string("deny"), 0 },
    { ngx_null_string, 0 }
};


static ngx_conf_post_handler_pt  ngx_http_vetting_write_status_post =
    ngx_http_vetting_write_status;


static ngx_command_t  ngx_http_vetting_commands[] = {

    { ngx_string("vetting_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_vetting_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vetting_gateway_id"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vetting_main_conf_t, gateway),
      NULL },

    { ngx_string("vetting_audit_log"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_vetting_audit_log,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vetting_token_lifetime"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE123,
      ngx_http_vetting_token_lifetime,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vetting_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_vetting_redis,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vetting_redis_prefix"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vetting_main_conf_t, redis_prefix),
      NULL },

    { ngx_string("vetting_redis_connect_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vetting_main_conf_t, redis_connect_timeout),
      NULL },

    { ngx_string("vetting_redis_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vetting_main_conf_t, redis_timeout),
      NULL },

    { ngx_string("vetting_redis_sync_interval"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vetting_main_conf_t, redis_sync),
      NULL },

    { ngx_string("vetting_redis_resync_interval"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_vetting_main_conf_t, redis_resync),
      NULL },

    { ngx_string("vetting_redis_backoff"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2,
      ngx_http_vetting_redis_backoff,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vetting_audit_stream"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_vetting_audit_stream,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vetting_geoip"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_http_vetting_geoip,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vetting_endpoint"),
      NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_vetting_endpoint,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vetting_tenant"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_vetting_tenant,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_vetting_loc_conf_t, tenant),
      NULL },

    { ngx_string("vetting_write_status"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_vetting_loc_conf_t, write_status),
      &ngx_http_vetting_write_status_post },

    { ngx_string("vetting_read_operations"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_vetting_read_operations,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vetting_batch_reads"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_vetting_loc_conf_t, batch_reads),
      NULL },

    { ngx_string("vetting_method_override"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_vetting_loc_conf_t, override),
      &ngx_http_vetting_override_modes },

    { ngx_string("vetting_rate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_vetting_rate,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vetting_rule"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_2MORE,
      ngx_http_vetting_rule,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vetting_countries"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_vetting_countries,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("vetting_country_unknown"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_vetting_loc_conf_t, country_unknown),
      &ngx_http_vetting_unknown_answers },

    { ngx_string("vetting_log_level"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_vetting_loc_conf_t, log_level),
      &ngx_http_vetting_log_levels },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_vetting_module_ctx = {
    ngx_http_vetting_add_variables,        /* preconfiguration */
    ngx_http_vetting_init,                 /* postconfiguration */

    ngx_http_vetting_create_main_conf,     /* create main configuration */
    ngx_http_vetting_init_main_conf,       /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_vetting_create_loc_conf,      /* create location configuration */
    ngx_http_vetting_merge_loc_conf        /* merge location configuration */
};


ngx_module_t  ngx_http_vetting_module = {
    NGX_MODULE_V1,
    &ngx_http_vetting_module_ctx,          /* module context */
    ngx_http_vetting_commands,             /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_vetting_init_process,         /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_vetting_exit_process,         /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


#define NGX_HTTP_VETTING_VAR_APP          0
#define NGX_HTTP_VETTING_VAR_MEMBER       1
#define NGX_HTTP_VETTING_VAR_IDENTITY     2
#define NGX_HTTP_VETTING_VAR_DECISION     3
#define NGX_HTTP_VETTING_VAR_RULE         4
#define NGX_HTTP_VETTING_VAR_ENDPOINT     5
#define NGX_HTTP_VETTING_VAR_TENANT       6
#define NGX_HTTP_VETTING_VAR_COUNTRY      7
#define NGX_HTTP_VETTING_VAR_INTERACTION  8
#define NGX_HTTP_VETTING_VAR_TOKEN_ID     9
#define NGX_HTTP_VETTING_VAR_DRY_RUN      10


static ngx_http_variable_t  ngx_http_vetting_vars[] = {

    { ngx_string("vetting_app"), NULL, ngx_http_vetting_variable,
      NGX_HTTP_VETTING_VAR_APP, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("vetting_member"), NULL, ngx_http_vetting_variable,
      NGX_HTTP_VETTING_VAR_MEMBER, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("vetting_identity"), NULL, ngx_http_vetting_variable,
      NGX_HTTP_VETTING_VAR_IDENTITY, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("vetting_decision"), NULL, ngx_http_vetting_variable,
      NGX_HTTP_VETTING_VAR_DECISION, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("vetting_rule"), NULL, ngx_http_vetting_variable,
      NGX_HTTP_VETTING_VAR_RULE, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("vetting_endpoint"), NULL, ngx_http_vetting_variable,
      NGX_HTTP_VETTING_VAR_ENDPOINT, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("vetting_tenant"), NULL, ngx_http_vetting_variable,
      NGX_HTTP_VETTING_VAR_TENANT, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("vetting_country"), NULL, ngx_http_vetting_variable,
      NGX_HTTP_VETTING_VAR_COUNTRY, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("vetting_interaction"), NULL, ngx_http_vetting_variable,
      NGX_HTTP_VETTING_VAR_INTERACTION, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("vetting_token_id"), NULL, ngx_http_vetting_variable,
      NGX_HTTP_VETTING_VAR_TOKEN_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("vetting_dry_run"), NULL, ngx_http_vetting_variable,
      NGX_HTTP_VETTING_VAR_DRY_RUN, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_str_t  ngx_http_vetting_endpoints[] = {
    ngx_string("off"),
    ngx_string("authorize"),
    ngx_string("token"),
    ngx_string("fhir"),
    ngx_string("status")
};


static ngx_str_t  ngx_http_vetting_events[] = {
    ngx_string("write"),
    ngx_string("rate"),
    ngx_string("members"),
    ngx_string("country"),
    ngx_string("unknown_token")
};


static ngx_str_t  ngx_http_vetting_actions[] = {
    ngx_string("log"),
    ngx_string("reject"),
    ngx_string("block")
};


static ngx_str_t  ngx_http_vetting_interactions[] = {
    ngx_null_string,
    ngx_string("read"),
    ngx_string("vread"),
    ngx_string("history"),
    ngx_string("search-type"),
    ngx_string("search-system"),
    ngx_string("search-compartment"),
    ngx_string("capabilities"),
    ngx_string("operation"),
    ngx_string("create"),
    ngx_string("update"),
    ngx_string("patch"),
    ngx_string("delete"),
    ngx_string("batch"),
    ngx_string("options")
};


static ngx_str_t  ngx_http_vetting_fhir_type =
    ngx_string("application/fhir+json");
static ngx_str_t  ngx_http_vetting_json_type =
    ngx_string("application/json");


/* per worker: refusal log lines written in the current second */
static time_t      ngx_http_vetting_log_second;
static ngx_uint_t  ngx_http_vetting_log_count;
static ngx_uint_t  ngx_http_vetting_log_dropped;


static ngx_int_t
ngx_http_vetting_handler(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    ngx_http_vetting_shm_t        *shm;
    ngx_http_vetting_ctx_t        *ctx;
    ngx_http_vetting_loc_conf_t   *vlcf;
    ngx_http_vetting_main_conf_t  *vmcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    vlcf = ngx_http_get_module_loc_conf(r, ngx_http_vetting_module);

    ctx = ngx_http_vetting_get_ctx(r);

    if (ctx == NULL) {
        if (vlcf->endpoint == NGX_HTTP_VETTING_OFF) {
            return NGX_DECLINED;
        }

        ctx = ngx_http_vetting_create_ctx(r, vlcf);
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    /* one client request is vetted once, whatever redirects follow */

    if (ctx->done) {
        return NGX_DECLINED;
    }

    if (ctx->waiting || ctx->body_wait) {
        return NGX_AGAIN;
    }

    rc = ngx_http_vetting_run(r, ctx, vlcf);

    if (rc == NGX_DECLINED) {
        ctx->done = 1;

        vmcf = ngx_http_get_module_main_conf(r, ngx_http_vetting_module);
        shm = vmcf->shm_zone->data;

        (void) ngx_atomic_fetch_add(&shm->sh->passed, 1);
    }

    return rc;
}


static ngx_http_vetting_ctx_t *
ngx_http_vetting_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t      *cln;
    ngx_http_vetting_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_vetting_module);

    if (ctx || !r->internal) {
        return ctx;
    }

    /*
     * nginx clears module contexts on internal redirects (try_files,
     * index, error_page); the pool cleanup registered with the context
     * finds it again, so a redirected request is not vetted twice
     */

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_vetting_ctx_cleanup) {
            ctx = cln->data;
            ngx_http_set_ctx(r, ctx, ngx_http_vetting_module);
            return ctx;
        }
    }

    return NULL;
}


static ngx_http_vetting_ctx_t *
ngx_http_vetting_create_ctx(ngx_http_request_t *r,
    ngx_http_vetting_loc_conf_t *vlcf)
{
    ngx_pool_cleanup_t      *cln;
    ngx_http_vetting_ctx_t  *ctx;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_vetting_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_http_vetting_ctx_cleanup;
    cln->data = ctx;

    ctx->endpoint = vlcf->endpoint;
    ctx->tenant = vlcf->tenant;

    ngx_http_set_ctx(r, ctx, ngx_http_vetting_module);

    return ctx;
}


static void
ngx_http_vetting_ctx_cleanup(void *data)
{
    ngx_http_vetting_ctx_t  *ctx = data;

    if (ctx->parser) {
        vetting_token_parser_free(ctx->parser);
        ctx->parser = NULL;
    }
}


int64_t
ngx_http_vetting_now(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (int64_t) tp->sec * 1000 + tp->msec;
}


ngx_str_t *
ngx_http_vetting_event_name(ngx_uint_t event)
{
    return &ngx_http_vetting_events[event];
}


ngx_str_t *
ngx_http_vetting_action_name(ngx_uint_t action)
{
    return &ngx_http_vetting_actions[action];
}


/*
 * The steps of a decision.  A step that waits (for the request body or
 * for Redis) returns and the request comes back to the same step.
 */

static ngx_int_t
ngx_http_vetting_run(ngx_http_request_t *r, ngx_http_vetting_ctx_t *ctx,
    ngx_http_vetting_loc_conf_t *vlcf)
{
    ngx_int_t  rc;

    switch (ctx->step) {

    case NGX_HTTP_VETTING_STEP_START:

        if (ctx->endpoint == NGX_HTTP_VETTING_STATUS) {
            return ngx_http_vetting_status(r, ctx);
        }

        if (ngx_http_vetting_address(r, ctx) != NGX_OK
            || ngx_http_vetting_redact_request_line(r) != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        switch (ctx->endpoint) {

        case NGX_HTTP_VETTING_AUTHORIZE:
            rc = ngx_http_vetting_identify_authorize(r, ctx);
            break;

        case NGX_HTTP_VETTING_TOKEN:
            rc = ngx_http_vetting_identify_token(r, ctx);
            break;

        default: /* NGX_HTTP_VETTING_FHIR */
            rc = ngx_http_vetting_identify_fhir(r, ctx, vlcf);
            break;
        }

        if (rc != NGX_OK) {
            return rc;
        }

        ctx->step = NGX_HTTP_VETTING_STEP_SYNC;

        /* fall through */

    case NGX_HTTP_VETTING_STEP_SYNC:

        ctx->step = NGX_HTTP_VETTING_STEP_GRANT;

        if (!ngx_http_vetting_redis_synced()) {

            /*
             * a gateway that starts, or got a new zone, reads the current
             * suspensions before it decides anything, and only then asks
             * Redis about the credentials it does not know
             */

            rc = ngx_http_vetting_redis_call(r, ctx,
                                             ngx_http_vetting_sync_resume,
                                             0, NULL);
            if (rc == NGX_AGAIN) {
                return rc;
            }
        }

        /* fall through */

    case NGX_HTTP_VETTING_STEP_GRANT:

        if (ctx->has_token) {
            rc = ngx_http_vetting_lookup_token(r, ctx, ctx->digest);
            if (rc != NGX_OK) {
                return rc;
            }
        }

        if (ctx->has_grant) {
            rc = ngx_http_vetting_lookup_token(r, ctx, ctx->grant_digest);
            if (rc != NGX_OK) {
                return rc;
            }
        }

        ctx->step = NGX_HTTP_VETTING_STEP_DECIDE;

        /* fall through */

    case NGX_HTTP_VETTING_STEP_DECIDE:

        rc = ngx_http_vetting_decide(r, ctx, vlcf);
        if (rc != NGX_OK) {
            return rc;
        }

        ctx->step = NGX_HTTP_VETTING_STEP_RATE;
        ctx->rate_index = 0;

        /* fall through */

    default: /* NGX_HTTP_VETTING_STEP_RATE */

        rc = ngx_http_vetting_rates(r, ctx, vlcf);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_vetting_sync_resume(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, redisReply *reply)
{
    return NGX_OK;
}


/* the request body, read before a decision that needs it */

static ngx_int_t
ngx_http_vetting_read_body(ngx_http_request_t *r, ngx_http_vetting_ctx_t *ctx)
{
    ngx_int_t  rc;

    if (ctx->body_read) {
        return NGX_OK;
    }

    ctx->body_wait = 1;

    rc = ngx_http_read_client_request_body(r, ngx_http_vetting_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        ctx->body_wait = 0;
        return rc;
    }

    ngx_http_finalize_request(r, NGX_DONE);

    return NGX_DONE;
}


/* the body is in: the phases go on, from this module's same step */

static void
ngx_http_vetting_body_handler(ngx_http_request_t *r)
{
    ngx_http_vetting_ctx_t  *ctx;

    ctx = ngx_http_vetting_get_ctx(r);

    ctx->body_read = 1;
    ctx->body_wait = 0;

    r->preserve_body = 1;

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


/*
 * The request body as one piece of memory (copied from its buffers, or
 * read from its temporary file), at most max bytes: NGX_DECLINED when
 * it is larger, NGX_ERROR on failure.
 */

static ngx_int_t
ngx_http_vetting_body(ngx_http_request_t *r, size_t max, ngx_str_t *body)
{
    u_char       *p;
    off_t         len;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    body->len = 0;
    body->data = NULL;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        len += ngx_buf_size(cl->buf);
    }

    if (len == 0) {
        return NGX_OK;
    }

    if (len > (off_t) max) {
        return NGX_DECLINED;
    }

    p = ngx_pnalloc(r->pool, (size_t) len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    body->data = p;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (b->in_file) {
            n = ngx_read_file(b->file, p, (size_t) (b->file_last - b->file_pos),
                              b->file_pos);
            if (n == NGX_ERROR
                || n != (ssize_t) (b->file_last - b->file_pos))
            {
                return NGX_ERROR;
            }

            p += n;

        } else {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
        }
    }

    body->len = p - body->data;

    return NGX_OK;
}


/* the client address after realip, IPv4-mapped IPv6 written as IPv4 */

static ngx_int_t
ngx_http_vetting_address(ngx_http_request_t *r, ngx_http_vetting_ctx_t *ctx)
{
    u_char             *p;
    size_t              len;
    struct sockaddr    *sa;
    ngx_sockaddr_t      plain;

    sa = r->connection->sockaddr;

    if (vetting_geo_unmap(sa, &plain.sockaddr)) {
        sa = &plain.sockaddr;
    }

    p = ngx_pnalloc(r->pool, NGX_SOCKADDR_STRLEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    len = ngx_sock_ntop(sa, (sa->sa_family == AF_INET6)
                            ? sizeof(struct sockaddr_in6)
                            : sizeof(struct sockaddr_in),
                        p, NGX_SOCKADDR_STRLEN, 0);

    if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6) {
        len = ngx_sprintf(p, "unix") - p;
    }

    ctx->address.data = p;
    ctx->address.len = len;

    return NGX_OK;
}


/*
 * The request line, which nginx appends to every error log line of the
 * request and logs as $request, with the values of the query's secret
 * parameters redacted, as in AuditEvents.  $args and $request_uri, what
 * the upstream gets, stay as they were.
 */

static ngx_int_t
ngx_http_vetting_redact_request_line(ngx_http_request_t *r)
{
    u_char  *p, *line, *args, *last;
    size_t   len, size;

    line = r->request_line.data;
    last = line + r->request_line.len;
    args = r->args.data;

    if (r->args.len == 0 || args < line || args + r->args.len > last) {
        return NGX_OK;
    }

    /* "name=" becomes "name=redacted": at most 4 bytes for 1 */

    size = 4 * r->args.len + 16;

    p = ngx_pnalloc(r->pool, (args - line) + size + (last - args));
    if (p == NULL) {
        return NGX_ERROR;
    }

    len = vetting_redact_query(args, r->args.len, (char *) p + (args - line),
                               size);

    if (len == r->args.len && ngx_memcmp(p + (args - line), args, len) == 0) {
        return NGX_OK;
    }

    ngx_memcpy(p, line, args - line);
    ngx_memcpy(p + (args - line) + len, args + r->args.len,
               last - args - r->args.len);

    r->request_line.data = p;
    r->request_line.len = (args - line) + len + (last - args - r->args.len);

    return NGX_OK;
}


static ngx_int_t
ngx_http_vetting_copy(ngx_http_request_t *r, ngx_str_t *dst, u_char *src,
    size_t len)
{
    dst->data = ngx_pnalloc(r->pool, len);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(dst->data, src, len);
    dst->len = len;

    return NGX_OK;
}


/*
 * Authorization endpoint: the app as named by the query, or by the form
 * of a POST (OpenID Connect Core 3.1.2.1), which the server then reads
 * instead of the query; not proven.
 */

static ngx_int_t
ngx_http_vetting_identify_authorize(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx)
{
    size_t      len;
    ngx_int_t   rc;
    ngx_str_t   body, args;
    char        app[VETTING_APP_MAX + 1];

    args = r->args;

    if (r->method == NGX_HTTP_POST
        && r->headers_in.content_type
        && r->headers_in.content_type->value.len >= 33
        && ngx_strncasecmp(r->headers_in.content_type->value.data,
                           (u_char *) "application/x-www-form-urlencoded",
                           33) == 0)
    {
        rc = ngx_http_vetting_read_body(r, ctx);
        if (rc != NGX_OK) {
            return rc;
        }

        rc = ngx_http_vetting_body(r, NGX_HTTP_VETTING_FORM_MAX, &body);

        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc == NGX_OK
            && vetting_form_has(body.data, body.len, "client_id"))
        {
            args = body;
        }
    }

    if (args.len == 0) {
        return NGX_OK;
    }

    if (vetting_form_get(args.data, args.len, "client_id", app,
                         sizeof(app), &len)
        != VETTING_OK
        || !vetting_client_id_valid((u_char *) app, len))
    {
        return NGX_OK;
    }

    if (ngx_http_vetting_copy(r, &ctx->app, (u_char *) app, len) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->identity = NGX_HTTP_VETTING_ID_CLAIMED;

    return NGX_OK;
}


/*
 * Token endpoint: the app as its request names it (HTTP Basic,
 * client_id in the form, or the issuer of a client assertion), the
 * grant it presents, and a note to learn from the response.  Nothing
 * here is proven until the authorization server answers 200.
 */

static ngx_int_t
ngx_http_vetting_identify_token(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx)
{
    char              *buf, grant[32];
    size_t             len, glen;
    ngx_int_t          rc;
    ngx_str_t          body;
    ngx_table_elt_t   *h;

    if (r->method != NGX_HTTP_POST) {
        return NGX_OK;
    }

    rc = ngx_http_vetting_read_body(r, ctx);
    if (rc != NGX_OK) {
        return rc;
    }

    ctx->learn = 1;

    buf = ngx_pnalloc(r->pool, 8192);
    if (buf == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* HTTP Basic first: it names the client however large the body */

    len = 0;
    h = r->headers_in.authorization;

    if (h) {
        rc = ngx_http_vetting_basic_client(r, &h->value, buf,
                                           VETTING_APP_MAX + 1, &len);
        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (rc == NGX_OK) {
            ctx->basic = 1;
        }
    }

    rc = ngx_http_vetting_body(r, NGX_HTTP_VETTING_FORM_MAX, &body);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {

        /*
         * a token request is a small form: one too large to vet could
         * hide the client and the grant of a suspended app
         */

        return ngx_http_vetting_refuse(r, ctx, NGX_HTTP_VETTING_R_BODY,
                                       "body");
    }

    if (!ctx->basic
        && vetting_form_get(body.data, body.len, "client_id", buf,
                            VETTING_APP_MAX + 1, &len)
           != VETTING_OK)
    {
        len = 0;

        if (vetting_form_get(body.data, body.len, "client_assertion", buf,
                             8192, &len)
            != VETTING_OK)
        {
            len = 0;

        } else {
            rc = ngx_http_vetting_assertion_client(r, (u_char *) buf, len,
                                                   buf, VETTING_APP_MAX + 1,
                                                   &len);
            if (rc == NGX_ERROR) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            if (rc != NGX_OK) {
                len = 0;
            }
        }
    }

    if (len && vetting_client_id_valid((u_char *) buf, len)) {
        if (ngx_http_vetting_copy(r, &ctx->app, (u_char *) buf, len)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ctx->identity = NGX_HTTP_VETTING_ID_CLAIMED;
    }

    if (vetting_form_get(body.data, body.len, "grant_type", grant,
                         sizeof(grant), &glen)
        != VETTING_OK)
    {
        return NGX_OK;
    }

    if (glen == 18 && ngx_strncmp(grant, "authorization_code", 18) == 0) {
        ctx->grant = NGX_HTTP_VETTING_CODE;
        rc = vetting_form_get(body.data, body.len, "code", buf, 8192, &len);

    } else if (glen == 13 && ngx_strncmp(grant, "refresh_token", 13) == 0) {
        ctx->grant = NGX_HTTP_VETTING_REFRESH;
        rc = vetting_form_get(body.data, body.len, "refresh_token", buf,
                              8192, &len);

    } else {
        return NGX_OK;
    }

    if (rc == VETTING_OK && len
        && vetting_digest((u_char *) buf, len, ctx->grant_digest)
           == VETTING_OK)
    {
        ctx->has_grant = 1;
    }

    return NGX_OK;
}


/*
 * Base64 text as the lenient decoders of authorization servers read it
 * (Node's Buffer in oidc-provider and jose, MIME decoders): bytes out of
 * both alphabets skipped, either alphabet taken, "=" ending the data, a
 * lone last character and leftover bits dropped.  Written to dst in the
 * standard alphabet, or the URL-safe one; returns the length, at most
 * len.  Such decoders read the same bytes as the strict parsers until
 * they part, and what they name is proven only by the server's 200.
 */

static size_t
ngx_http_vetting_base64_lenient(u_char *dst, u_char *src, size_t len,
    ngx_uint_t url)
{
    u_char      *p, *q, *last, *alphabet, c;
    size_t       n;
    ngx_uint_t   v;

    static u_char  std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                           "abcdefghijklmnopqrstuvwxyz0123456789+/";
    static u_char  safe[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                            "abcdefghijklmnopqrstuvwxyz0123456789-_";

    alphabet = url ? safe : std;
    q = dst;
    v = 0;

    for (p = src, last = src + len; p < last && *p != '='; p++) {
        c = *p;

        if (c >= 'A' && c <= 'Z') {
            v = c - 'A';

        } else if (c >= 'a' && c <= 'z') {
            v = c - 'a' + 26;

        } else if (c >= '0' && c <= '9') {
            v = c - '0' + 52;

        } else if (c == '+' || c == '-') {
            v = 62;

        } else if (c == '/' || c == '_') {
            v = 63;

        } else {
            continue;
        }

        *q++ = alphabet[v];
    }

    n = q - dst;

    if (n % 4 == 1) {
        n--;

    } else if (n % 4) {
        q[-1] = alphabet[v & (n % 4 == 2 ? 0x30 : 0x3c)];
    }

    return n;
}


/*
 * The client of HTTP Basic credentials, as vetting_parse_basic_client()
 * reads them, or else as lenient base64 decoders do.  NGX_DECLINED: no
 * client found.
 */

static ngx_int_t
ngx_http_vetting_basic_client(ngx_http_request_t *r, ngx_str_t *value,
    char *out, size_t size, size_t *len)
{
    u_char  *p, *last, *clean;
    size_t   n;

    switch (vetting_parse_basic_client(value->data, value->len, out, size,
                                       len))
    {
    case VETTING_OK:
        return NGX_OK;

    case VETTING_DECLINED:
        return NGX_DECLINED;

    default:
        break;
    }

    p = value->data;
    last = p + value->len;

    while (p < last && *p == ' ') {
        p++;
    }

    if (last - p < 6 || ngx_strncasecmp(p, (u_char *) "Basic ", 6) != 0) {
        return NGX_DECLINED;
    }

    clean = ngx_pnalloc(r->pool, last - p);
    if (clean == NULL) {
        return NGX_ERROR;
    }

    n = ngx_http_vetting_base64_lenient(ngx_cpymem(clean, "Basic ", 6),
                                        p + 6, last - p - 6, 0);

    if (vetting_parse_basic_client(clean, 6 + n, out, size, len)
        != VETTING_OK)
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * The issuer of a client assertion, as vetting_jwt_issuer() reads it,
 * or else with its three parts read as lenient decoders do (the server
 * checks the signature over the parts as sent).  jwt may be out.
 */

static ngx_int_t
ngx_http_vetting_assertion_client(ngx_http_request_t *r, u_char *jwt,
    size_t jwt_len, char *out, size_t size, size_t *len)
{
    u_char      *p, *q, *last, *dot, *copy, *clean;
    ngx_uint_t   i;

    /* out may be jwt, and a parse that fails writes into out */

    copy = ngx_pnalloc(r->pool, 2 * jwt_len);
    if (copy == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(copy, jwt, jwt_len);
    clean = copy + jwt_len;

    if (vetting_jwt_issuer(copy, jwt_len, out, size, len) == VETTING_OK) {
        return NGX_OK;
    }

    p = copy;
    last = copy + jwt_len;
    q = clean;

    for (i = 0; i < 3; i++) {
        dot = ngx_strlchr(p, last, '.');

        if ((i < 2 && dot == NULL) || (i == 2 && dot != NULL)) {
            return NGX_DECLINED;
        }

        if (dot == NULL) {
            dot = last;
        }

        q += ngx_http_vetting_base64_lenient(q, p, dot - p, 1);

        if (i < 2) {
            *q++ = '.';
        }

        p = dot + 1;
    }

    if (vetting_jwt_issuer(clean, q - clean, out, size, len) != VETTING_OK) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * FHIR API: what the request does, and who stands behind its Bearer
 * token.  The token is looked up in the zone here and in Redis in the
 * next step.
 */

static ngx_int_t
ngx_http_vetting_identify_fhir(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, ngx_http_vetting_loc_conf_t *vlcf)
{
    u_char            *path;
    size_t             len;
    ngx_int_t          rc;
    ngx_str_t          body;
    ngx_uint_t         i, form;
    vetting_str_t      token;
    ngx_list_part_t   *part;
    ngx_table_elt_t   *h;

    if (!ctx->body_read) {

        path = r->uri.data;
        len = r->uri.len;

        if (vlcf->base.len
            && len >= vlcf->base.len
            && ngx_strncmp(path, vlcf->base.data, vlcf->base.len) == 0
            && (len == vlcf->base.len || path[vlcf->base.len] == '/'))
        {
            path += vlcf->base.len;
            len -= vlcf->base.len;
        }

        vetting_fhir_classify((char *) r->method_name.data,
                              r->method_name.len, path, len, r->args.data,
                              r->args.len, (char *) vlcf->reads, &ctx->fhir);

        /*
         * "_getpages" in the query makes a POST to the base a paging
         * continuation, which has no body or a form: any other body
         * is a Bundle, a batch or a transaction, whatever the query
         */

        if (r->method == NGX_HTTP_POST
            && ctx->fhir.interaction == VETTING_FHIR_SEARCH_SYSTEM
            && (len == 0 || (len == 1 && path[0] == '/'))
            && (r->headers_in.content_length_n > 0 || r->headers_in.chunked)
            && !(r->headers_in.content_type
                 && r->headers_in.content_type->value.len >= 33
                 && ngx_strncasecmp(r->headers_in.content_type->value.data,
                                    (u_char *)
                                    "application/x-www-form-urlencoded",
                                    33) == 0))
        {
            ctx->fhir.interaction = VETTING_FHIR_BATCH;
            ctx->fhir.write = 1;
            ctx->fhir.needs_body = 1;
        }

        if (r->args.len
            && vetting_form_has(r->args.data, r->args.len, "_method"))
        {
            ctx->override = 1;
        }

        part = &r->headers_in.headers.part;
        h = part->elts;

        for (i = 0; /* void */; i++) {

            if (i >= part->nelts) {
                if (part->next == NULL) {
                    break;
                }

                part = part->next;
                h = part->elts;
                i = 0;
            }

            if (h[i].hash
                && vetting_is_override_header(h[i].key.data, h[i].key.len))
            {
                ctx->override_header = 1;
            }
        }

        h = r->headers_in.authorization;

        if (h) {
            rc = vetting_parse_bearer(h->value.data, h->value.len, &token);

            if (rc == VETTING_DECLINED) {
                return ngx_http_vetting_refuse(r, ctx,
                                               NGX_HTTP_VETTING_R_SCHEME,
                                               "scheme");
            }

            if (rc != VETTING_OK) {
                return ngx_http_vetting_refuse(r, ctx,
                                               NGX_HTTP_VETTING_R_TOKEN,
                                               "credentials");
            }

            if (vetting_digest(token.data, token.len, ctx->digest)
                != VETTING_OK)
            {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            ctx->has_token = 1;
            ctx->token_seen = 1;

        } else if (r->args.len) {
            rc = ngx_http_vetting_form_token(r, ctx, r->args.data,
                                             r->args.len);
            if (rc != NGX_OK) {
                return rc;
            }
        }
    }

    /* a POST whose body tells whether it reads or writes */

    if (r->method != NGX_HTTP_POST
        || !(ctx->fhir.needs_body
             || (r->headers_in.content_type
                 && r->headers_in.content_type->value.len >= 33
                 && ngx_strncasecmp(r->headers_in.content_type->value.data,
                                    (u_char *)
                                    "application/x-www-form-urlencoded",
                                    33) == 0)))
    {
        return NGX_OK;
    }

    rc = ngx_http_vetting_read_body(r, ctx);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_vetting_body(r, NGX_HTTP_VETTING_BUNDLE_MAX, &body);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {

        /* too large to look at: a read never needs that much */

        ctx->fhir.write = 1;
        return NGX_OK;
    }

    form = (r->headers_in.content_type
            && r->headers_in.content_type->value.len >= 33
            && ngx_strncasecmp(r->headers_in.content_type->value.data,
                               (u_char *) "application/x-www-form-urlencoded",
                               33) == 0);

    if (form && vetting_form_has(body.data, body.len, "_method")) {
        ctx->override = 1;
    }

    if (form && r->headers_in.authorization == NULL && !ctx->token_seen) {
        rc = ngx_http_vetting_form_token(r, ctx, body.data, body.len);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    if (!ctx->fhir.needs_body) {
        return NGX_OK;
    }

    if (form && vetting_form_has(body.data, body.len, "_getpages")) {
        ctx->fhir.write = 0;
        ctx->fhir.interaction = VETTING_FHIR_SEARCH_SYSTEM;
        ctx->fhir.action = 'E';
        return NGX_OK;
    }

    if (vlcf->batch_reads
        && vetting_bundle_reads_only(body.data, body.len, 1000) == VETTING_OK)
    {
        ctx->fhir.write = 0;
    }

    return NGX_OK;
}


/*
 * RFC 6750 2.2 and 2.3: without an Authorization header, the token may
 * be the "access_token" parameter of the query or of a form body, and a
 * FHIR server may take it from there.
 */

static ngx_int_t
ngx_http_vetting_form_token(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, u_char *data, size_t len)
{
    char    *buf;
    size_t   n;

    if (!vetting_form_has(data, len, "access_token")) {
        return NGX_OK;
    }

    buf = ngx_pnalloc(r->pool, VETTING_AUTH_MAX + 1);
    if (buf == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (vetting_form_get(data, len, "access_token", buf, VETTING_AUTH_MAX + 1,
                         &n)
        != VETTING_OK
        || n == 0)
    {
        return ngx_http_vetting_refuse(r, ctx, NGX_HTTP_VETTING_R_TOKEN,
                                       "credentials");
    }

    if (vetting_digest((u_char *) buf, n, ctx->digest) != VETTING_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->has_token = 1;
    ctx->token_seen = 1;

    return NGX_OK;
}


/*
 * What a token (or code, or refresh token) digest stands for: the zone
 * first, then Redis, which holds what every gateway learned.
 */

static ngx_int_t
ngx_http_vetting_lookup_token(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, u_char *digest)
{
    u_char                         hex[2 * VETTING_DIGEST_LEN];
    ngx_int_t                      rc;
    ngx_uint_t                     grant;
    ngx_http_vetting_cmd_t         cmd;
    ngx_http_vetting_shm_t        *shm;
    ngx_http_vetting_token_t       tok;
    ngx_http_vetting_main_conf_t  *vmcf;

    vmcf = ngx_http_get_module_main_conf(r, ngx_http_vetting_module);
    shm = vmcf->shm_zone->data;

    grant = (digest == ctx->grant_digest);

    if (grant) {
        ctx->has_grant = 0;

    } else {
        ctx->has_token = 0;
    }

    rc = ngx_http_vetting_token_get(shm, digest, &tok, r->pool,
                                    ngx_http_vetting_now());

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_OK) {
        ngx_http_vetting_use_token(r, ctx, grant ? NULL : &tok);

        if (grant && tok.kind != NGX_HTTP_VETTING_UNKNOWN) {
            ctx->issued = tok.issued;

            if (ctx->app.len == 0 && tok.app.len) {
                ctx->app = tok.app;
                ctx->identity = NGX_HTTP_VETTING_ID_CLAIMED;
            }
        }

        return NGX_OK;
    }

    /* not in the zone: tok was left unset */

    tok.kind = NGX_HTTP_VETTING_UNKNOWN;

    if (vmcf->redis == NULL || !ngx_http_vetting_redis_available()) {
        ngx_http_vetting_use_token(r, ctx, grant ? NULL : &tok);
        return NGX_OK;
    }

    vetting_digest_hex(digest, hex);

    ngx_http_vetting_cmd_init(&cmd);
    ngx_http_vetting_cmd_literal(&cmd, "GET");
    ngx_http_vetting_cmd_printf(&cmd, "%Vtok:%*s", &vmcf->redis_prefix,
                                sizeof(hex), hex);

    rc = ngx_http_vetting_redis_call(r, ctx, ngx_http_vetting_token_resume,
                                     grant, &cmd);

    if (rc == NGX_AGAIN) {
        return NGX_AGAIN;
    }

    ngx_http_vetting_use_token(r, ctx, grant ? NULL : &tok);

    return NGX_OK;
}


/*
 * Redis's answer about a digest: "<kind> <issued> <expires> <app>
 * <tenant> <member>", nil, or nothing (Redis failed: the token stays
 * unknown, and the FHIR server, which knows its own tokens, decides).
 */

static ngx_int_t
ngx_http_vetting_token_resume(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, redisReply *reply)
{
    u_char                        *p, *last, *f[6];
    size_t                         flen[6];
    ngx_int_t                      n;
    ngx_uint_t                     i, grant;
    ngx_http_vetting_shm_t        *shm;
    ngx_http_vetting_token_t       tok;
    ngx_http_vetting_main_conf_t  *vmcf;

    vmcf = ngx_http_get_module_main_conf(r, ngx_http_vetting_module);
    shm = vmcf->shm_zone->data;

    grant = ctx->waiter_index;

    ngx_memzero(&tok, sizeof(ngx_http_vetting_token_t));
    tok.kind = NGX_HTTP_VETTING_UNKNOWN;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        goto unknown;
    }

    if (reply->type != REDIS_REPLY_STRING) {

        /* not learned anywhere: remember that for a moment */

        tok.issued = ngx_http_vetting_now();
        tok.expires = tok.issued + 2000;
        ngx_http_vetting_token_put(shm, grant ? ctx->grant_digest
                                              : ctx->digest,
                                   &tok, r->connection->log);
        goto unknown;
    }

    p = (u_char *) reply->str;
    last = p + reply->len;

    for (i = 0; i < 6; i++) {
        f[i] = p;

        while (p < last && *p != ' ') {
            p++;
        }

        flen[i] = p - f[i];

        if (p < last) {
            p++;
        }
    }

    if (flen[0] != 1 || flen[3] == 0) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "vetting: malformed learned token record in redis");
        goto unknown;
    }

    tok.kind = (u_char) (f[0][0] - '0');

    n = ngx_atoi(f[1], flen[1]);
    tok.issued = (n == NGX_ERROR) ? 0 : n;

    n = ngx_atoi(f[2], flen[2]);
    tok.expires = (n == NGX_ERROR) ? 0 : n;

    if (tok.kind < NGX_HTTP_VETTING_ACCESS
        || tok.kind > NGX_HTTP_VETTING_CODE
        || tok.expires <= ngx_http_vetting_now()
        || flen[3] > VETTING_APP_MAX
        || flen[4] > VETTING_TENANT_MAX + 1
        || flen[5] > VETTING_MEMBER_MAX)
    {
        goto unknown;
    }

    /* "-": a code learned where the request named no client */

    if (!(flen[3] == 1 && f[3][0] == '-')) {
        tok.app.data = f[3];
        tok.app.len = flen[3];
    }

    if (!(flen[4] == 1 && f[4][0] == '-')) {
        tok.tenant.data = f[4];
        tok.tenant.len = flen[4];
    }

    if (!(flen[5] == 1 && f[5][0] == '-')) {
        tok.member.data = f[5];
        tok.member.len = flen[5];
    }

    if (ngx_http_vetting_copy(r, &tok.app, tok.app.data, tok.app.len)
           != NGX_OK
        || ngx_http_vetting_copy(r, &tok.member, tok.member.data,
                                 tok.member.len)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_vetting_token_put(shm, grant ? ctx->grant_digest : ctx->digest,
                               &tok, r->connection->log);

    if (grant) {
        ctx->issued = tok.issued;

        if (ctx->app.len == 0) {
            ctx->app = tok.app;
            ctx->identity = NGX_HTTP_VETTING_ID_CLAIMED;
        }

        return NGX_OK;
    }

unknown:

    ngx_http_vetting_use_token(r, ctx, grant ? NULL : &tok);

    return NGX_OK;
}


/* a Bearer token looked up: known access token, or unknown */

static void
ngx_http_vetting_use_token(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, ngx_http_vetting_token_t *tok)
{
    if (tok == NULL) {
        return;
    }

    if (tok->kind == NGX_HTTP_VETTING_ACCESS) {
        ctx->app = tok->app;
        ctx->member = tok->member;
        ctx->issued = tok->issued;
        ctx->identity = NGX_HTTP_VETTING_ID_PROVEN;
        return;
    }

    /* not an access token this fleet saw issued */

    ctx->identity = NGX_HTTP_VETTING_ID_NONE;
    ctx->unknown_token = 1;

    ngx_http_vetting_count(r, ctx, NGX_HTTP_VETTING_EV_UNKNOWN);
}


/* the checks of a request, cheapest first; each refusal names its rule */

static ngx_int_t
ngx_http_vetting_decide(ngx_http_request_t *r, ngx_http_vetting_ctx_t *ctx,
    ngx_http_vetting_loc_conf_t *vlcf)
{
    ngx_int_t                      rc;
    ngx_uint_t                     i;
    ngx_http_vetting_rule_t       *rule;
    ngx_http_vetting_block_t       blk;
    ngx_http_vetting_main_conf_t  *vmcf;

    vmcf = ngx_http_get_module_main_conf(r, ngx_http_vetting_module);

    if (ctx->app.len
        && ngx_http_vetting_block_get(vmcf->shm_zone->data, &ctx->app,
                                      &ctx->tenant, &blk)
           == NGX_OK)
    {
        if (blk.since) {
            return ngx_http_vetting_refuse(r, ctx, NGX_HTTP_VETTING_R_BLOCKED,
                                           "blocked");
        }

        /* credentials issued before a confirmed block stay dead */

        if (ctx->issued && ctx->issued < blk.revoked) {
            return ngx_http_vetting_refuse(r, ctx, NGX_HTTP_VETTING_R_REVOKED,
                                           "revoked");
        }
    }

    rc = ngx_http_vetting_rejected(r, ctx, vlcf);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_vetting_country(r, ctx, vlcf);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ctx->endpoint == NGX_HTTP_VETTING_FHIR) {
        return ngx_http_vetting_check_fhir(r, ctx, vlcf);
    }

    /*
     * a member authorization that Redis cannot count, under a rule that
     * fails closed, waits until Redis is back
     */

    if (ctx->endpoint == NGX_HTTP_VETTING_TOKEN
        && ctx->grant == NGX_HTTP_VETTING_CODE
        && vmcf->redis
        && vlcf->rules
        && !ngx_http_vetting_redis_available())
    {
        rule = vlcf->rules->elts;

        for (i = 0; i < vlcf->rules->nelts; i++) {
            if (rule[i].event == NGX_HTTP_VETTING_EV_MEMBERS
                && rule[i].fail_closed)
            {
                return ngx_http_vetting_refuse(r, ctx,
                                           NGX_HTTP_VETTING_R_UNAVAILABLE,
                                           "members");
            }
        }
    }

    return NGX_OK;
}


/* the API is read-only */

static ngx_int_t
ngx_http_vetting_check_fhir(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, ngx_http_vetting_loc_conf_t *vlcf)
{
    if (ctx->override_header) {

        if (vlcf->override == NGX_HTTP_VETTING_OVERRIDE_STRIP) {
            if (ngx_http_vetting_override(r, ctx, vlcf) != NGX_OK) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

        } else {
            ctx->override = 1;
        }
    }

    if (ctx->override) {
        ngx_http_vetting_count(r, ctx, NGX_HTTP_VETTING_EV_WRITE);
        return ngx_http_vetting_refuse(r, ctx, NGX_HTTP_VETTING_R_OVERRIDE,
                                       "write");
    }

    if (ctx->fhir.bad_method) {
        ngx_http_vetting_count(r, ctx, NGX_HTTP_VETTING_EV_WRITE);
        return ngx_http_vetting_refuse(r, ctx, NGX_HTTP_VETTING_R_METHOD,
                                       "write");
    }

    if (ctx->fhir.write) {
        ngx_http_vetting_count(r, ctx, NGX_HTTP_VETTING_EV_WRITE);
        return ngx_http_vetting_refuse(r, ctx, NGX_HTTP_VETTING_R_WRITE,
                                       "write");
    }

    return NGX_OK;
}


/*
 * Removes method-override headers so the upstream never sees them.  The
 * list is built anew from copies of the other headers: shifting elements
 * inside the old one would leave r->headers_in.authorization and its
 * kind pointing at the wrong header.  Those pointers keep the old list,
 * which stays in the request's pool unchanged.
 */

static ngx_int_t
ngx_http_vetting_override(ngx_http_request_t *r, ngx_http_vetting_ctx_t *ctx,
    ngx_http_vetting_loc_conf_t *vlcf)
{
    ngx_uint_t        i;
    ngx_list_t        old;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *copy;

    old = r->headers_in.headers;

    if (ngx_list_init(&r->headers_in.headers, r->pool, 20,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        r->headers_in.headers = old;
        return NGX_ERROR;
    }

    part = &old.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (vetting_is_override_header(h[i].key.data, h[i].key.len)) {
            ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                          "vetting: method override header \"%V\" removed",
                          &h[i].key);
            continue;
        }

        copy = ngx_list_push(&r->headers_in.headers);
        if (copy == NULL) {
            return NGX_ERROR;
        }

        *copy = h[i];
    }

    ctx->override_header = 0;

    return NGX_OK;
}


/* the answers */

ngx_int_t
ngx_http_vetting_refuse(ngx_http_request_t *r, ngx_http_vetting_ctx_t *ctx,
    ngx_uint_t refusal, const char *rule)
{
    u_char                        *body, hdr[256], diag[256];
    size_t                         len, n;
    int64_t                        s;
    ngx_str_t                     *type, desc;
    ngx_uint_t                     status, fhir, retry;
    const char                    *code, *details, *error;
    ngx_http_vetting_loc_conf_t   *vlcf;
    ngx_http_vetting_main_conf_t  *vmcf;

    vlcf = ngx_http_get_module_loc_conf(r, ngx_http_vetting_module);
    vmcf = ngx_http_get_module_main_conf(r, ngx_http_vetting_module);

    ctx->refusal = refusal;
    ctx->rule.data = (u_char *) rule;
    ctx->rule.len = ngx_strlen(rule);
    ctx->done = 1;

    fhir = (ctx->endpoint == NGX_HTTP_VETTING_FHIR);
    retry = 0;
    details = NULL;
    error = NULL;

    switch (refusal) {

    case NGX_HTTP_VETTING_R_WRITE:
    case NGX_HTTP_VETTING_R_METHOD:
    case NGX_HTTP_VETTING_R_OVERRIDE:
        status = vlcf->write_status;
        code = "forbidden";
        details = "MSG_OP_NOT_ALLOWED";

        if (refusal == NGX_HTTP_VETTING_R_OVERRIDE) {
            ngx_str_set(&desc, "method override is not allowed: the API is "
                               "read-only");

        } else {
            desc.data = diag;
            desc.len = ngx_snprintf(diag, sizeof(diag),
                                    "%V is not allowed here: the Patient "
                                    "Access API is read-only",
                                    &r->method_name)
                       - diag;
        }

        if (ngx_http_vetting_set_header(r, "Allow",
                                        (u_char *) "GET, HEAD, OPTIONS", 18)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        break;

    case NGX_HTTP_VETTING_R_RATE:
        status = NGX_HTTP_TOO_MANY_REQUESTS;
        code = "throttled";
        error = "temporarily_unavailable";

        s = (ctx->rate_state.retry + 999) / 1000;
        retry = (s < 1) ? 1 : (ngx_uint_t) s;

        desc.data = diag;
        desc.len = ngx_snprintf(diag, sizeof(diag),
                                "request rate over the limit \"%V\"; "
                                "retry after %ui s", &ctx->rate->id, retry)
                   - diag;

        n = vetting_ratelimit_policy((char *) hdr, sizeof(hdr),
                                     (char *) ctx->rate->id.data,
                                     ctx->rate->burst, ctx->rate->window);

        if (ngx_http_vetting_set_header(r, "RateLimit-Policy", hdr, n)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        s = (ctx->rate_state.retry + 999) / 1000;

        n = vetting_ratelimit_value((char *) hdr, sizeof(hdr),
                                    (char *) ctx->rate->id.data,
                                    ctx->rate_state.remaining,
                                    (s < 1) ? 1 : (uint64_t) s);

        if (ngx_http_vetting_set_header(r, "RateLimit", hdr, n) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        break;

    case NGX_HTTP_VETTING_R_BLOCKED:
    case NGX_HTTP_VETTING_R_REVOKED:
        code = "security";

        if (refusal == NGX_HTTP_VETTING_R_BLOCKED) {
            ngx_str_set(&desc, "the app is suspended pending security "
                               "review");

        } else {
            ngx_str_set(&desc, "credentials issued to the app before its "
                               "block are revoked");
        }

        if (fhir) {
            status = NGX_HTTP_UNAUTHORIZED;

            n = ngx_snprintf(hdr, sizeof(hdr),
                             "Bearer realm=\"fhir\", error=\"invalid_token\""
                             ", error_description=\"%V\"", &desc)
                - hdr;

            if (ngx_http_vetting_set_header(r, "WWW-Authenticate", hdr, n)
                != NGX_OK)
            {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

        } else if (ctx->endpoint == NGX_HTTP_VETTING_TOKEN) {

            if (refusal == NGX_HTTP_VETTING_R_REVOKED) {
                status = NGX_HTTP_BAD_REQUEST;
                error = "invalid_grant";

            } else {
                status = NGX_HTTP_UNAUTHORIZED;
                error = "invalid_client";

                if (ctx->basic
                    && ngx_http_vetting_set_header(r, "WWW-Authenticate",
                                           (u_char *) "Basic realm=\"oauth\"",
                                           19)
                       != NGX_OK)
                {
                    return NGX_HTTP_INTERNAL_SERVER_ERROR;
                }
            }

        } else {

            /* never redirect: the redirect_uri of a suspended app */

            status = NGX_HTTP_FORBIDDEN;
            error = "unauthorized_client";
        }

        break;

    case NGX_HTTP_VETTING_R_COUNTRY:
        status = NGX_HTTP_FORBIDDEN;
        code = "forbidden";
        error = "access_denied";

        desc.data = diag;
        desc.len = ngx_snprintf(diag, sizeof(diag),
                                "requests from %s are not allowed",
                                ctx->country[0] ? ctx->country
                                                : "an unknown country")
                   - diag;
        break;

    case NGX_HTTP_VETTING_R_RULE:
        status = NGX_HTTP_FORBIDDEN;
        code = "forbidden";
        error = (ctx->endpoint == NGX_HTTP_VETTING_TOKEN)
                ? "unauthorized_client" : "access_denied";

        desc.data = diag;
        desc.len = ngx_snprintf(diag, sizeof(diag),
                                "refused while over the vetting rule "
                                "\"%V\"", &ctx->rule_text)
                   - diag;
        break;

    case NGX_HTTP_VETTING_R_TOKEN:
        status = NGX_HTTP_BAD_REQUEST;
        code = "invalid";
        ngx_str_set(&desc, "malformed Authorization header");

        if (ngx_http_vetting_set_header(r, "WWW-Authenticate",
                                        (u_char *) "Bearer realm=\"fhir\", "
                                        "error=\"invalid_request\"", 44)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        break;

    case NGX_HTTP_VETTING_R_SCHEME:
        status = NGX_HTTP_UNAUTHORIZED;
        code = "login";
        details = "MSG_AUTH_REQUIRED";
        ngx_str_set(&desc, "a Bearer token is required");

        if (ngx_http_vetting_set_header(r, "WWW-Authenticate",
                                        (u_char *) "Bearer realm=\"fhir\"",
                                        19)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        break;

    case NGX_HTTP_VETTING_R_BODY:
        status = NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
        code = "too-costly";
        error = "invalid_request";
        ngx_str_set(&desc, "the request body is too large to vet");
        break;

    default: /* NGX_HTTP_VETTING_R_UNAVAILABLE */
        status = NGX_HTTP_SERVICE_UNAVAILABLE;
        code = "transient";
        error = "temporarily_unavailable";
        retry = 1;
        ngx_str_set(&desc, "the vetting state is unavailable; retry later");
        break;
    }

    ctx->status = status;
    ctx->description = desc;

    if (retry) {
        n = ngx_sprintf(hdr, "%ui", retry) - hdr;

        if (ngx_http_vetting_set_header(r, "Retry-After", hdr, n) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    ngx_http_vetting_log_refusal(r, ctx, vlcf);

    /* the country of every refusal goes into its AuditEvent */

    ngx_http_vetting_geo(r, ctx);

    ngx_http_vetting_audit(r, ctx, VETTING_AUDIT_REFUSAL, &desc, NULL, 0);

    (void) ngx_atomic_fetch_add(&((ngx_http_vetting_shm_t *)
                                  vmcf->shm_zone->data)->sh->refused, 1);

    body = ngx_pnalloc(r->pool, 1024);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* NUL-terminated for the formatters; desc may point into diag */

    n = ngx_min(desc.len, sizeof(diag) - 1);
    ngx_memmove(diag, desc.data, n);
    diag[n] = '\0';

    if (fhir || error == NULL) {
        type = &ngx_http_vetting_fhir_type;

        if (vetting_outcome_format("error", code, details, (char *) diag,
                                   body, 1024, &len)
            != VETTING_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

    } else {
        type = &ngx_http_vetting_json_type;

        if (ngx_http_vetting_set_header(r, "Pragma", (u_char *) "no-cache",
                                        8)
            != NGX_OK
            || vetting_oauth_error_format(error, (char *) diag, body, 1024,
                                          &len)
               != VETTING_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    return ngx_http_vetting_send(r, ctx, status, type, body, len);
}


static ngx_int_t
ngx_http_vetting_send(ngx_http_request_t *r, ngx_http_vetting_ctx_t *ctx,
    ngx_uint_t status, ngx_str_t *type, u_char *body, size_t len)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    rc = ngx_http_discard_request_body(r);

    if (rc != NGX_OK) {
        ngx_http_finalize_request(r, rc);
        return NGX_DONE;
    }

    if (ngx_http_vetting_set_header(r, "Cache-Control",
                                    (u_char *) "no-store", 8)
        != NGX_OK)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return NGX_DONE;
    }

    r->headers_out.status = status;
    r->headers_out.content_type = *type;
    r->headers_out.content_type_len = type->len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.content_length_n = len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        ngx_http_finalize_request(r, rc);
        return NGX_DONE;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return NGX_DONE;
    }

    b->pos = body;
    b->last = body + len;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    ngx_http_finalize_request(r, ngx_http_output_filter(r, &out));

    return NGX_DONE;
}


static ngx_int_t
ngx_http_vetting_set_header(ngx_http_request_t *r, const char *name,
    u_char *value, size_t len)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);

    h->value.data = ngx_pnalloc(r->pool, len);
    if (h->value.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(h->value.data, value, len);
    h->value.len = len;

    return NGX_OK;
}


ngx_uint_t
ngx_http_vetting_log_level(ngx_http_request_t *r)
{
    ngx_http_vetting_loc_conf_t  *vlcf;

    vlcf = ngx_http_get_module_loc_conf(r, ngx_http_vetting_module);

    return vlcf->log_level;
}


/*
 * One line per refusal, at the configured level, but at most
 * NGX_HTTP_VETTING_LOG_BURST a second per worker: a client that floods
 * must not flood the log (the audit log keeps every refusal).
 */

static void
ngx_http_vetting_log_refusal(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, ngx_http_vetting_loc_conf_t *vlcf)
{
    if (r->connection->log->log_level < vlcf->log_level) {
        return;
    }

    if (ngx_http_vetting_log_second != ngx_time()) {

        if (ngx_http_vetting_log_dropped) {
            ngx_log_error(vlcf->log_level, r->connection->log, 0,
                          "vetting: %ui more refusals not logged",
                          ngx_http_vetting_log_dropped);
        }

        ngx_http_vetting_log_second = ngx_time();
        ngx_http_vetting_log_count = 0;
        ngx_http_vetting_log_dropped = 0;
    }

    if (ngx_http_vetting_log_count++ >= NGX_HTTP_VETTING_LOG_BURST) {
        ngx_http_vetting_log_dropped++;
        return;
    }

    ngx_log_error(vlcf->log_level, r->connection->log, 0,
                  "vetting refused request: rule \"%V\", status %ui, "
                  "app \"%V\" (%s), member \"%V\": %V",
                  &ctx->rule, ctx->status, &ctx->app,
                  ctx->identity == NGX_HTTP_VETTING_ID_PROVEN ? "proven"
                  : ctx->identity == NGX_HTTP_VETTING_ID_CLAIMED ? "claimed"
                  : "unidentified",
                  &ctx->member, &ctx->description);
}


/* vetting_endpoint status: what this gateway knows, as JSON */

static ngx_int_t
ngx_http_vetting_status(ngx_http_request_t *r, ngx_http_vetting_ctx_t *ctx)
{
    u_char                        *p, *last;
    size_t                         size;
    ngx_uint_t                     i, n;
    ngx_array_t                    blocks;
    ngx_http_vetting_shm_t        *shm;
    ngx_http_vetting_block_t      *blk;
    ngx_http_vetting_main_conf_t  *vmcf;

    if (r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    vmcf = ngx_http_get_module_main_conf(r, ngx_http_vetting_module);
    shm = vmcf->shm_zone->data;

    if (ngx_array_init(&blocks, r->pool, 16, sizeof(ngx_http_vetting_block_t))
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    n = ngx_http_vetting_blocks_list(shm, r->pool, &blocks);

    size = 512 + vmcf->gateway.len
           + n * (VETTING_APP_MAX + VETTING_TENANT_MAX + 160);

    p = ngx_pnalloc(r->pool, size);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->body.data = p;
    last = p + size;

    p = ngx_slprintf(p, last,
                     "{\"gateway\":\"%V\",\"redis\":\"%V\","
                     "\"synced\":%L,\"outbox\":%ui,\"outbox_lost\":%ui,"
                     "\"refused_by_redis\":%ui,"
                     "\"passed\":%uA,\"refused\":%uA,\"suspended\":%uA,"
                     "\"suspensions\":[",
                     &vmcf->gateway, ngx_http_vetting_redis_state(),
                     shm->sh->synced, shm->sh->outbox_n,
                     shm->sh->outbox_lost, shm->sh->refused_by_redis,
                     shm->sh->passed,
                     shm->sh->refused, shm->sh->blocked);

    blk = blocks.elts;

    for (i = 0; i < n; i++) {
        p = ngx_slprintf(p, last,
                         "%s{\"app\":\"%V\",\"scope\":\"%V\",\"since\":%L,"
                         "\"revoked_before\":%L,\"state\":\"%s\","
                         "\"rule\":\"%V\"}",
                         i ? "," : "", &blk[i].app, &blk[i].scope,
                         blk[i].since, blk[i].revoked,
                         blk[i].since == 0 ? "revoked"
                         : blk[i].confirmed ? "confirmed" : "suspended",
                         &blk[i].rule);
    }

    p = ngx_slprintf(p, last, "]}\n");

    ctx->done = 1;
    ngx_str_set(&ctx->rule, "status");

    return ngx_http_vetting_send(r, ctx, NGX_HTTP_OK,
                                 &ngx_http_vetting_json_type,
                                 ctx->body.data, p - ctx->body.data);
}


/* variables */

static ngx_int_t
ngx_http_vetting_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_vetting_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_vetting_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                  *p;
    ngx_str_t                s;
    ngx_http_vetting_ctx_t  *ctx;

    ctx = ngx_http_vetting_get_ctx(r->main);

    if (ctx == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    ngx_str_null(&s);

    switch (data) {

    case NGX_HTTP_VETTING_VAR_APP:
        s = ctx->app;
        break;

    case NGX_HTTP_VETTING_VAR_MEMBER:
        s = ctx->member;
        break;

    case NGX_HTTP_VETTING_VAR_IDENTITY:
        if (ctx->identity == NGX_HTTP_VETTING_ID_PROVEN) {
            ngx_str_set(&s, "proven");

        } else if (ctx->identity == NGX_HTTP_VETTING_ID_CLAIMED) {
            ngx_str_set(&s, "claimed");

        } else {
            ngx_str_set(&s, "none");
        }

        break;

    case NGX_HTTP_VETTING_VAR_DECISION:
        if (ctx->refusal) {
            ngx_str_set(&s, "reject");

        } else if (ctx->done) {
            ngx_str_set(&s, "pass");
        }

        break;

    case NGX_HTTP_VETTING_VAR_RULE:
        s = ctx->rule;
        break;

    case NGX_HTTP_VETTING_VAR_ENDPOINT:
        s = ngx_http_vetting_endpoints[ctx->endpoint];
        break;

    case NGX_HTTP_VETTING_VAR_TENANT:
        s = ctx->tenant;
        break;

    case NGX_HTTP_VETTING_VAR_COUNTRY:
        ngx_http_vetting_geo(r->main, ctx);

        if (ctx->geo_known) {
            s.data = (u_char *) ctx->country;
            s.len = ngx_strlen(ctx->country);
        }

        break;

    case NGX_HTTP_VETTING_VAR_INTERACTION:
        if (ctx->endpoint == NGX_HTTP_VETTING_FHIR) {
            s = ngx_http_vetting_interactions[ctx->fhir.interaction];
        }

        break;

    case NGX_HTTP_VETTING_VAR_TOKEN_ID:
        if (ctx->token_seen) {
            p = ngx_pnalloc(r->pool, 2 * VETTING_DIGEST_LEN);
            if (p == NULL) {
                return NGX_ERROR;
            }

            vetting_digest_hex(ctx->digest, p);

            s.data = p;
            s.len = 12;
        }

        break;

    default: /* NGX_HTTP_VETTING_VAR_DRY_RUN */
        s = ctx->dry_run;
        break;
    }

    if (s.len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = s.len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    v->data = s.data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_vetting_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_vetting_handler;

    return ngx_http_vetting_filter_init(cf);
}


static ngx_int_t
ngx_http_vetting_init_process(ngx_cycle_t *cycle)
{
    return ngx_http_vetting_redis_init_process(cycle);
}


static void
ngx_http_vetting_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_vetting_redis_exit_process(cycle);
}


/* configuration */

static void *
ngx_http_vetting_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_vetting_main_conf_t  *vmcf;

    vmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_vetting_main_conf_t));
    if (vmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     vmcf->shm_zone = NULL;
     *     vmcf->gateway = { 0, NULL };
     *     vmcf->audit_file = NULL;
     *     vmcf->redis = NULL;
     *     vmcf->redis_user = { 0, NULL };
     *     vmcf->redis_password = { 0, NULL };
     *     vmcf->redis_prefix = { 0, NULL };
     *     vmcf->geo = NULL;
     *     vmcf->geo_file = { 0, NULL };
     *     vmcf->policy = { 0, NULL };
     */

    vmcf->token_lifetime = NGX_CONF_UNSET_MSEC;
    vmcf->refresh_lifetime = NGX_CONF_UNSET_MSEC;
    vmcf->code_lifetime = NGX_CONF_UNSET_MSEC;
    vmcf->redis_db = NGX_CONF_UNSET;
    vmcf->redis_connect_timeout = NGX_CONF_UNSET_MSEC;
    vmcf->redis_timeout = NGX_CONF_UNSET_MSEC;
    vmcf->redis_sync = NGX_CONF_UNSET_MSEC;
    vmcf->redis_resync = NGX_CONF_UNSET_MSEC;
    vmcf->redis_backoff_min = NGX_CONF_UNSET_MSEC;
    vmcf->redis_backoff_max = NGX_CONF_UNSET_MSEC;
    vmcf->audit_stream = NGX_CONF_UNSET_UINT;

    if (ngx_array_init(&vmcf->policy_rules, cf->pool, 8, sizeof(ngx_str_t))
        != NGX_OK)
    {
        return NULL;
    }

    return vmcf;
}


static char *
ngx_http_vetting_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_vetting_main_conf_t  *vmcf = conf;

    u_char                  *p;
    size_t                   len;
    ngx_str_t                name, *text;
    ngx_uint_t               i;
    ngx_http_vetting_shm_t  *shm;

    if (vmcf->shm_zone == NULL) {
        ngx_str_set(&name, "vetting");

        shm = ngx_pcalloc(cf->pool, sizeof(ngx_http_vetting_shm_t));
        if (shm == NULL) {
            return NGX_CONF_ERROR;
        }

        vmcf->shm_zone = ngx_shared_memory_add(cf, &name, 16 * 1024 * 1024,
                                               &ngx_http_vetting_module);
        if (vmcf->shm_zone == NULL) {
            return NGX_CONF_ERROR;
        }

        vmcf->shm_zone->init = ngx_http_vetting_init_zone;
        vmcf->shm_zone->data = shm;
    }

    if (vmcf->gateway.len == 0) {
        vmcf->gateway = cf->cycle->hostname;
    }

    ngx_conf_init_msec_value(vmcf->token_lifetime, 3600 * 1000);
    ngx_conf_init_msec_value(vmcf->refresh_lifetime, 30 * 86400 * 1000U);
    ngx_conf_init_msec_value(vmcf->code_lifetime, 600 * 1000);

    if (vmcf->redis_db == NGX_CONF_UNSET) {
        vmcf->redis_db = 0;
    }

    if (vmcf->redis_prefix.data == NULL) {
        ngx_str_set(&vmcf->redis_prefix, "vt:");
    }

    ngx_conf_init_msec_value(vmcf->redis_connect_timeout, 500);
    ngx_conf_init_msec_value(vmcf->redis_timeout, 100);
    ngx_conf_init_msec_value(vmcf->redis_sync, 100);
    ngx_conf_init_msec_value(vmcf->redis_resync, 30000);
    ngx_conf_init_msec_value(vmcf->redis_backoff_min, 100);
    ngx_conf_init_msec_value(vmcf->redis_backoff_max, 10000);
    ngx_conf_init_uint_value(vmcf->audit_stream, 1000000);

    if (vmcf->redis_timeout == 0 || vmcf->redis_connect_timeout == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "vetting redis timeouts must not be zero");
        return NGX_CONF_ERROR;
    }

    if (vmcf->redis_sync == 0 || vmcf->redis_resync == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "vetting redis intervals must not be zero");
        return NGX_CONF_ERROR;
    }

    text = vmcf->policy_rules.elts;

    for (i = 0; vmcf->geo == NULL && i < vmcf->policy_rules.nelts; i++) {
        if (text[i].len > 8 && ngx_strncmp(text[i].data, "country ", 8) == 0)
        {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "rule \"%V\" counts nothing without "
                               "\"vetting_geoip\"", &text[i]);
        }
    }

    /* the rules in force, recorded with every suspension */

    len = 0;
    text = vmcf->policy_rules.elts;

    for (i = 0; i < vmcf->policy_rules.nelts; i++) {
        len += text[i].len + 2;
    }

    if (len) {
        p = ngx_pnalloc(cf->pool, len);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        vmcf->policy.data = p;

        for (i = 0; i < vmcf->policy_rules.nelts; i++) {
            if (i) {
                *p++ = ';';
                *p++ = ' ';
            }

            p = ngx_cpymem(p, text[i].data, text[i].len);
        }

        vmcf->policy.len = p - vmcf->policy.data;
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_vetting_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_vetting_loc_conf_t  *vlcf;

    vlcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_vetting_loc_conf_t));
    if (vlcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     vlcf->base = { 0, NULL };
     *     vlcf->tenant = { 0, NULL };
     *     vlcf->reads = NULL;
     */

    vlcf->endpoint = NGX_CONF_UNSET_UINT;
    vlcf->write_status = NGX_CONF_UNSET_UINT;
    vlcf->read_ops = NGX_CONF_UNSET_PTR;
    vlcf->batch_reads = NGX_CONF_UNSET;
    vlcf->override = NGX_CONF_UNSET_UINT;
    vlcf->rates = NGX_CONF_UNSET_PTR;
    vlcf->rules = NGX_CONF_UNSET_PTR;
    vlcf->countries = NGX_CONF_UNSET_PTR;
    vlcf->country_unknown = NGX_CONF_UNSET;
    vlcf->log_level = NGX_CONF_UNSET_UINT;

    return vlcf;
}


static char *
ngx_http_vetting_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_vetting_loc_conf_t *prev = parent;
    ngx_http_vetting_loc_conf_t *conf = child;

    u_char                        *p;
    size_t                         len;
    ngx_str_t                     *op, *cc;
    ngx_uint_t                     i;
    ngx_http_vetting_rule_t       *rule;
    ngx_http_core_loc_conf_t      *clcf;
    ngx_http_vetting_main_conf_t  *vmcf;

    if (conf->endpoint == NGX_CONF_UNSET_UINT) {
        conf->endpoint = prev->endpoint;
        conf->base = prev->base;
    }

    ngx_conf_merge_uint_value(conf->endpoint, prev->endpoint,
                              NGX_HTTP_VETTING_OFF);

    if (conf->endpoint == NGX_HTTP_VETTING_FHIR && conf->base.data == NULL) {
        clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

#if (NGX_PCRE)
        if (clcf->regex) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"vetting_endpoint fhir\" in a regex location "
                               "needs the \"base=\" parameter");
            return NGX_CONF_ERROR;
        }
#endif

        conf->base = clcf->name;

        while (conf->base.len && conf->base.data[conf->base.len - 1] == '/') {
            conf->base.len--;
        }
    }

    if (conf->endpoint != NGX_HTTP_VETTING_OFF) {
        vmcf = ngx_http_conf_get_module_main_conf(cf,
                                                  ngx_http_vetting_module);
        vmcf->used = 1;
    }

    ngx_conf_merge_str_value(conf->tenant, prev->tenant, "");
    ngx_conf_merge_uint_value(conf->write_status, prev->write_status,
                              NGX_HTTP_NOT_ALLOWED);
    ngx_conf_merge_ptr_value(conf->read_ops, prev->read_ops, NULL);
    ngx_conf_merge_value(conf->batch_reads, prev->batch_reads, 0);
    ngx_conf_merge_uint_value(conf->override, prev->override,
                              NGX_HTTP_VETTING_OVERRIDE_REJECT);
    ngx_conf_merge_ptr_value(conf->rates, prev->rates, NULL);
    ngx_conf_merge_ptr_value(conf->rules, prev->rules, NULL);
    ngx_conf_merge_value(conf->country_unknown, prev->country_unknown, 1);
    ngx_conf_merge_uint_value(conf->log_level, prev->log_level, NGX_LOG_WARN);

    if (conf->countries == NGX_CONF_UNSET_PTR) {

        if (prev->countries == NGX_CONF_UNSET_PTR) {

            /* the default: the United States only */

            prev->countries = ngx_array_create(cf->pool, 1,
                                               sizeof(ngx_str_t));
            if (prev->countries == NULL) {
                return NGX_CONF_ERROR;
            }

            cc = ngx_array_push(prev->countries);
            if (cc == NULL) {
                return NGX_CONF_ERROR;
            }

            ngx_str_set(cc, "US");
        }

        conf->countries = prev->countries;
    }

    if (conf->countries && conf->countries->nelts == 0) {
        conf->countries = NULL;
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->name.len && conf->endpoint == NGX_HTTP_VETTING_OFF
        && conf->rates && conf->rates != prev->rates)
    {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "\"vetting_rate\" has no effect in location "
                           "\"%V\" without \"vetting_endpoint\"",
                           &clcf->name);
    }

    if (clcf->name.len && conf->endpoint != NGX_HTTP_VETTING_OFF
        && conf->endpoint != NGX_HTTP_VETTING_STATUS
        && conf->tenant.len == 0 && conf->rules)
    {
        rule = conf->rules->elts;

        for (i = 0; i < conf->rules->nelts; i++) {
            if (rule[i].tenant) {
                ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                                   "rule \"%V\" counts per tenant, and "
                                   "location \"%V\" has no "
                                   "\"vetting_tenant\"",
                                   &rule[i].text, &clcf->name);
            }
        }
    }

    /* the read operations as vetting_fhir_classify() takes them */

    if (conf->read_ops == prev->read_ops) {
        conf->reads = prev->reads;

    } else if (conf->read_ops) {
        len = 1;
        op = conf->read_ops->elts;

        for (i = 0; i < conf->read_ops->nelts; i++) {
            len += op[i].len + 1;
        }

        p = ngx_pnalloc(cf->pool, len);
        if (p == NULL) {
            return NGX_CONF_ERROR;
        }

        conf->reads = p;

        for (i = 0; i < conf->read_ops->nelts; i++) {
            p = ngx_cpymem(p, op[i].data, op[i].len);
            *p++ = '\0';
        }

        *p = '\0';
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_vetting_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_vetting_main_conf_t  *vmcf = conf;

    u_char                  *p;
    ssize_t                  size;
    ngx_str_t               *value, name, s;
    ngx_http_vetting_shm_t  *shm;

    if (vmcf->shm_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    p = (u_char *) ngx_strchr(value[1].data, ':');

    if (p == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone \"%V\", expected name:size",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    name.data = value[1].data;
    name.len = p - value[1].data;

    s.data = p + 1;
    s.len = value[1].data + value[1].len - s.data;

    size = ngx_parse_size(&s);

    if (name.len == 0 || size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (size < (ssize_t) (64 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is too small", &value[1]);
        return NGX_CONF_ERROR;
    }

    shm = ngx_pcalloc(cf->pool, sizeof(ngx_http_vetting_shm_t));
    if (shm == NULL) {
        return NGX_CONF_ERROR;
    }

    vmcf->shm_zone = ngx_shared_memory_add(cf, &name, size,
                                           &ngx_http_vetting_module);
    if (vmcf->shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (vmcf->shm_zone->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is already used", &name);
        return NGX_CONF_ERROR;
    }

    vmcf->shm_zone->init = ngx_http_vetting_init_zone;
    vmcf->shm_zone->data = shm;

    return NGX_CONF_OK;
}


static char *
ngx_http_vetting_audit_log(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_vetting_main_conf_t  *vmcf = conf;

    ngx_str_t  *value;

    if (vmcf->audit_file) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        return NGX_CONF_OK;
    }

    vmcf->audit_file = ngx_conf_open_file(cf->cycle, &value[1]);
    if (vmcf->audit_file == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_vetting_token_lifetime(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_vetting_main_conf_t  *vmcf = conf;

    ngx_str_t   *value, s;
    ngx_msec_t  *dst, ms;
    ngx_uint_t   i;

    if (vmcf->token_lifetime != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "refresh=", 8) == 0) {
            dst = &vmcf->refresh_lifetime;
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

        } else if (ngx_strncmp(value[i].data, "code=", 5) == 0) {
            dst = &vmcf->code_lifetime;
            s.data = value[i].data + 5;
            s.len = value[i].len - 5;

        } else if (i == 1) {
            dst = &vmcf->token_lifetime;
            s = value[i];

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        ms = ngx_parse_time(&s, 0);

        if (ms == (ngx_msec_t) NGX_ERROR || ms == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid lifetime \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        *dst = ms;
    }

    if (vmcf->token_lifetime == NGX_CONF_UNSET_MSEC) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "the access token lifetime is missing");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_vetting_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_vetting_main_conf_t  *vmcf = conf;

    u_char      *p;
    ngx_int_t    db;
    ngx_str_t   *value;
    ngx_url_t    u;
    ngx_uint_t   i;

    if (vmcf->redis) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0 && cf->args->nelts == 2) {
        return NGX_CONF_OK;
    }

    /*
     * the name is resolved here, once: hiredis would resolve it with a
     * blocking getaddrinfo() in the worker
     */

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = value[1];
    u.default_port = 6379;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        if (u.err) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "%s in vetting_redis \"%V\"", u.err, &u.url);
        }

        return NGX_CONF_ERROR;
    }

    if (u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no address for vetting_redis \"%V\"", &u.url);
        return NGX_CONF_ERROR;
    }

    vmcf->redis = &u.addrs[0];

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "db=", 3) == 0) {
            db = ngx_atoi(value[i].data + 3, value[i].len - 3);

            if (db == NGX_ERROR || db > 65535) {
                goto invalid;
            }

            vmcf->redis_db = db;
            continue;
        }

        if (ngx_strncmp(value[i].data, "user=", 5) == 0
            && value[i].len > 5)
        {
            vmcf->redis_user.data = value[i].data + 5;
            vmcf->redis_user.len = value[i].len - 5;
            continue;
        }

        if (ngx_strncmp(value[i].data, "password=", 9) == 0
            && value[i].len > 9)
        {
            vmcf->redis_password.data = value[i].data + 9;
            vmcf->redis_password.len = value[i].len - 9;
            continue;
        }

        goto invalid;
    }

    if (vmcf->redis_user.len && vmcf->redis_password.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "vetting_redis \"user=\" needs \"password=\"");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;

invalid:

    /* the name only: a value may be a password, even a misspelt one */

    p = ngx_strlchr(value[i].data, value[i].data + value[i].len, '=');

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%*s%s\"",
                       p ? (size_t) (p + 1 - value[i].data) : value[i].len,
                       value[i].data, p ? "..." : "");

    return NGX_CONF_ERROR;
}


static char *
ngx_http_vetting_redis_backoff(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_vetting_main_conf_t  *vmcf = conf;

    ngx_str_t   *value;
    ngx_msec_t   min, max;

    if (vmcf->redis_backoff_min != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    value = cf->args->elts;

    min = ngx_parse_time(&value[1], 0);
    max = ngx_parse_time(&value[2], 0);

    if (min == (ngx_msec_t) NGX_ERROR || max == (ngx_msec_t) NGX_ERROR
        || min == 0 || max < min)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid back-off \"%V %V\": expected "
                           "min max, 0 < min <= max", &value[1], &value[2]);
        return NGX_CONF_ERROR;
    }

    vmcf->redis_backoff_min = min;
    vmcf->redis_backoff_max = max;

    return NGX_CONF_OK;
}


static char *
ngx_http_vetting_audit_stream(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_vetting_main_conf_t  *vmcf = conf;

    ngx_int_t   n;
    ngx_str_t  *value;

    if (vmcf->audit_stream != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        vmcf->audit_stream = 0;
        return NGX_CONF_OK;
    }

    n = ngx_atoi(value[1].data, value[1].len);

    if (n == NGX_ERROR || n < 1000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid audit stream length \"%V\", expected "
                           "\"off\" or at least 1000", &value[1]);
        return NGX_CONF_ERROR;
    }

    vmcf->audit_stream = n;

    return NGX_CONF_OK;
}


static char *
ngx_http_vetting_geoip(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_vetting_main_conf_t  *vmcf = conf;

    u_char              *p, *last, *s;
    char                 err[512];
    const char          *tmp, *path[VETTING_GEO_PATH_MAX + 1], **pp;
    ngx_str_t           *value;
    ngx_uint_t           n;
    ngx_pool_cleanup_t  *cln;

    if (vmcf->geo) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_conf_full_name(cf->cycle, &value[1], 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    pp = NULL;

    if (cf->args->nelts == 3) {

        if (ngx_strncmp(value[2].data, "country_path=", 13) != 0
            || value[2].len == 13)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[2]);
            return NGX_CONF_ERROR;
        }

        /* "country.iso_code" -> {"country", "iso_code", NULL} */

        p = value[2].data + 13;
        last = value[2].data + value[2].len;
        n = 0;

        while (p < last) {
            s = p;

            while (p < last && *p != '.') {
                p++;
            }

            if (p == s || n == VETTING_GEO_PATH_MAX) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid country path \"%V\"", &value[2]);
                return NGX_CONF_ERROR;
            }

            path[n] = ngx_pnalloc(cf->pool, p - s + 1);
            if (path[n] == NULL) {
                return NGX_CONF_ERROR;
            }

            ngx_cpystrn((u_char *) path[n], s, p - s + 1);
            n++;

            if (p < last) {
                p++;

                if (p == last) {
                    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                       "invalid country path \"%V\"",
                                       &value[2]);
                    return NGX_CONF_ERROR;
                }
            }
        }

        path[n] = NULL;
        pp = path;
    }

    tmp = getenv("TMPDIR");
    if (tmp == NULL || *tmp == '\0') {
        tmp = "/tmp";
    }

    vmcf->geo = vetting_geo_open((char *) value[1].data, tmp, pp, err,
                                 sizeof(err));
    if (vmcf->geo == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "vetting_geoip %s", err);
        return NGX_CONF_ERROR;
    }

    vmcf->geo_file = value[1];

    if (pp && !ngx_http_vetting_geo_probe(vmcf->geo)) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "vetting_geoip \"%V\": no country at \"%V\" "
                           "for 1.1.1.1, 8.8.8.8 or 2001:4860::1; is the "
                           "path right?", &value[1], &value[2]);
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        vetting_geo_close(vmcf->geo);
        vmcf->geo = NULL;
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_http_vetting_cleanup_geo;
    cln->data = vmcf->geo;

    ngx_conf_log_error(NGX_LOG_DEBUG, cf, 0,
                       "vetting_geoip \"%V\": %s, country at \"%s\"",
                       &value[1], vetting_geo_type(vmcf->geo),
                       vetting_geo_country_path(vmcf->geo));

    return NGX_CONF_OK;
}


/* whether well-known public addresses have a country in the database */

static ngx_uint_t
ngx_http_vetting_geo_probe(vetting_geo_t *geo)
{
    char                  cc[4];
    ngx_uint_t            i;
    struct sockaddr_in    sin;
    struct sockaddr_in6   sin6;
    static const char    *v4[] = { "1.1.1.1", "8.8.8.8" };

    for (i = 0; i < 2; i++) {
        ngx_memzero(&sin, sizeof(struct sockaddr_in));
        sin.sin_family = AF_INET;
        sin.sin_addr.s_addr = ngx_inet_addr((u_char *) v4[i],
                                            ngx_strlen(v4[i]));

        if (vetting_geo_lookup(geo, (struct sockaddr *) &sin, cc)
            == VETTING_GEO_FOUND)
        {
            return 1;
        }
    }

    ngx_memzero(&sin6, sizeof(struct sockaddr_in6));
    sin6.sin6_family = AF_INET6;

    if (ngx_inet6_addr((u_char *) "2001:4860::1", 12,
                       sin6.sin6_addr.s6_addr)
        == NGX_OK
        && vetting_geo_lookup(geo, (struct sockaddr *) &sin6, cc)
           == VETTING_GEO_FOUND)
    {
        return 1;
    }

    return 0;
}


static void
ngx_http_vetting_cleanup_geo(void *data)
{
    vetting_geo_close(data);
}


static char *
ngx_http_vetting_endpoint(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_vetting_loc_conf_t *vlcf = conf;

    ngx_str_t   *value;
    ngx_uint_t   i;

    if (vlcf->endpoint != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    for (i = 0; i < sizeof(ngx_http_vetting_endpoints) / sizeof(ngx_str_t);
         i++)
    {
        if (value[1].len == ngx_http_vetting_endpoints[i].len
            && ngx_strncmp(value[1].data, ngx_http_vetting_endpoints[i].data,
                           value[1].len)
               == 0)
        {
            break;
        }
    }

    if (i == sizeof(ngx_http_vetting_endpoints) / sizeof(ngx_str_t)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid endpoint \"%V\", expected \"authorize\", "
                           "\"token\", \"fhir\", \"status\" or \"off\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    vlcf->endpoint = i;

    if (cf->args->nelts == 3) {

        if (i != NGX_HTTP_VETTING_FHIR
            || ngx_strncmp(value[2].data, "base=", 5) != 0
            || value[2].len < 6
            || value[2].data[5] != '/')
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[2]);
            return NGX_CONF_ERROR;
        }

        vlcf->base.data = value[2].data + 5;
        vlcf->base.len = value[2].len - 5;

        while (vlcf->base.len > 1
               && vlcf->base.data[vlcf->base.len - 1] == '/')
        {
            vlcf->base.len--;
        }
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_vetting_tenant(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_str_t   *value;
    ngx_uint_t   i;

    value = cf->args->elts;

    if (value[1].len > VETTING_TENANT_MAX
        || (value[1].len == 1 && value[1].data[0] == '*'))
    {
        goto invalid;
    }

    for (i = 0; i < value[1].len; i++) {
        if (!(isalnum(value[1].data[i]) || value[1].data[i] == '-'
              || value[1].data[i] == '_' || value[1].data[i] == '.'))
        {
            goto invalid;
        }
    }

    return ngx_conf_set_str_slot(cf, cmd, conf);

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid tenant \"%V\", expected 1 to %d letters, "
                       "digits, \".\", \"-\" or \"_\"",
                       &value[1], VETTING_TENANT_MAX);

    return NGX_CONF_ERROR;
}


static char *
ngx_http_vetting_write_status(ngx_conf_t *cf, void *post, void *data)
{
    ngx_uint_t  *status = data;

    if (*status != NGX_HTTP_FORBIDDEN && *status != NGX_HTTP_NOT_ALLOWED) {
        return "must be 403 or 405";
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_vetting_read_operations(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_vetting_loc_conf_t *vlcf = conf;

    ngx_str_t   *value, *op;
    ngx_uint_t   i, j;

    if (vlcf->read_ops != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        vlcf->read_ops = NULL;
        return NGX_CONF_OK;
    }

    vlcf->read_ops = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                      sizeof(ngx_str_t));
    if (vlcf->read_ops == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < cf->args->nelts; i++) {

        if (value[i].data[0] == '$') {
            value[i].data++;
            value[i].len--;
        }

        for (j = 0; j < value[i].len; j++) {
            if (!(isalnum(value[i].data[j]) || value[i].data[j] == '-'
                  || value[i].data[j] == '_'))
            {
                break;
            }
        }

        if (value[i].len == 0 || j < value[i].len) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid operation name \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        op = ngx_array_push(vlcf->read_ops);
        if (op == NULL) {
            return NGX_CONF_ERROR;
        }

        *op = value[i];
    }

    return NGX_CONF_OK;
}


/*
 * vetting_rate 10r/s [burst=N] [per=app|address] [name=ID] [exact]
 *              [fail=open|closed] [dry_run];
 */

static char *
ngx_http_vetting_rate(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_vetting_loc_conf_t *vlcf = conf;

    u_char                   *p;
    size_t                    len;
    uint64_t                  w;
    ngx_int_t                 n;
    ngx_str_t                *value;
    ngx_uint_t                i;
    ngx_http_vetting_rate_t  *rate, *other;

    value = cf->args->elts;

    if (vlcf->rates == NGX_CONF_UNSET_PTR) {
        vlcf->rates = ngx_array_create(cf->pool, 2,
                                       sizeof(ngx_http_vetting_rate_t));
        if (vlcf->rates == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    rate = ngx_array_push(vlcf->rates);
    if (rate == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(rate, sizeof(ngx_http_vetting_rate_t));

    rate->burst = 1;
    rate->per = NGX_HTTP_VETTING_BY_APP;

    if (vetting_parse_rate(value[1].data, value[1].len, &rate->rate)
        != VETTING_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid rate \"%V\", expected a number of "
                           "requests like \"10r/s\", \"600r/m\", \"5000r/h\" "
                           "or \"20000r/d\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "burst=", 6) == 0) {
            n = ngx_atoi(value[i].data + 6, value[i].len - 6);

            if (n == NGX_ERROR || n < 1 || n > 1000000000) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid burst \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            rate->burst = n;
            continue;
        }

        if (ngx_strcmp(value[i].data, "per=app") == 0) {
            rate->per = NGX_HTTP_VETTING_BY_APP;
            continue;
        }

        if (ngx_strcmp(value[i].data, "per=address") == 0) {
            rate->per = NGX_HTTP_VETTING_BY_ADDRESS;
            continue;
        }

        if (ngx_strncmp(value[i].data, "name=", 5) == 0) {
            rate->id.data = value[i].data + 5;
            rate->id.len = value[i].len - 5;

            for (p = rate->id.data; p < rate->id.data + rate->id.len; p++) {
                if (!(isalnum(*p) || *p == '-' || *p == '_' || *p == '.')) {
                    break;
                }
            }

            if (rate->id.len == 0 || rate->id.len > 64
                || p < rate->id.data + rate->id.len)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid rate name \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strcmp(value[i].data, "exact") == 0) {
            rate->exact = 1;
            continue;
        }

        if (ngx_strcmp(value[i].data, "fail=open") == 0) {
            rate->fail_closed = 0;
            continue;
        }

        if (ngx_strcmp(value[i].data, "fail=closed") == 0) {
            rate->fail_closed = 1;
            continue;
        }

        if (ngx_strcmp(value[i].data, "dry_run") == 0) {
            rate->dry_run = 1;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    /*
     * seconds for the bucket to fill, the window of RateLimit-Policy, to
     * the nearest second: the stored rate is rounded down to a millionth
     */

    w = (rate->burst * 1000000 + rate->rate / 2) / rate->rate;
    rate->window = w ? w : 1;

    if (rate->id.len == 0) {
        len = sizeof("address--") - 1 + value[1].len + NGX_INT64_LEN;

        rate->id.data = ngx_pnalloc(cf->pool, len);
        if (rate->id.data == NULL) {
            return NGX_CONF_ERROR;
        }

        rate->id.len = ngx_sprintf(rate->id.data, "%s-%V-%uL",
                                   rate->per == NGX_HTTP_VETTING_BY_APP
                                   ? "app" : "address",
                                   &value[1], rate->burst)
                       - rate->id.data;

        for (p = rate->id.data; p < rate->id.data + rate->id.len; p++) {
            if (*p == '/') {
                *p = '-';
            }
        }
    }

    /* two rates of a location may not share a bucket by name */

    other = vlcf->rates->elts;

    for (i = 0; i < vlcf->rates->nelts - 1; i++) {
        if (other[i].id.len == rate->id.len
            && ngx_strncmp(other[i].id.data, rate->id.data, rate->id.len)
               == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate rate name \"%V\"", &rate->id);
            return NGX_CONF_ERROR;
        }
    }

    /* NUL-terminated: it is also written into headers by name */

    p = ngx_pnalloc(cf->pool, rate->id.len + 1);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(p, rate->id.data, rate->id.len);
    p[rate->id.len] = '\0';
    rate->id.data = p;

    if (ngx_http_vetting_text(cf, &rate->text) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * vetting_rule <event> threshold=N window=T action=log|reject|block
 *              [scope=global|tenant] [fail=open|closed];
 */

static char *
ngx_http_vetting_rule(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_vetting_loc_conf_t *vlcf = conf;

    ngx_int_t                      n;
    ngx_str_t                     *value, s, *text;
    ngx_uint_t                     i, action;
    ngx_msec_t                     window;
    ngx_http_vetting_rule_t       *rule;
    ngx_http_vetting_main_conf_t  *vmcf;

    value = cf->args->elts;

    if (vlcf->rules == NGX_CONF_UNSET_PTR) {
        vlcf->rules = ngx_array_create(cf->pool, 4,
                                       sizeof(ngx_http_vetting_rule_t));
        if (vlcf->rules == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    rule = ngx_array_push(vlcf->rules);
    if (rule == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(rule, sizeof(ngx_http_vetting_rule_t));

    for (i = 0; i < NGX_HTTP_VETTING_EV_MAX; i++) {
        if (value[1].len == ngx_http_vetting_events[i].len
            && ngx_strncmp(value[1].data, ngx_http_vetting_events[i].data,
                           value[1].len)
               == 0)
        {
            break;
        }
    }

    if (i == NGX_HTTP_VETTING_EV_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid rule event \"%V\", expected \"write\", "
                           "\"rate\", \"members\", \"country\" or "
                           "\"unknown_token\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    rule->event = i;
    action = NGX_CONF_UNSET_UINT;
    window = 0;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "threshold=", 10) == 0) {
            n = ngx_atoi(value[i].data + 10, value[i].len - 10);

            if (n == NGX_ERROR || n < 1) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "rule \"%V\": invalid threshold \"%V\", "
                                   "expected a positive number",
                                   &value[1], &value[i]);
                return NGX_CONF_ERROR;
            }

            rule->threshold = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "window=", 7) == 0) {
            s.data = value[i].data + 7;
            s.len = value[i].len - 7;

            window = ngx_parse_time(&s, 0);

            if (window == (ngx_msec_t) NGX_ERROR || window < 1000
                || window > 400 * 86400 * 1000U)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "rule \"%V\": invalid window \"%V\", "
                                   "expected 1s to 400d",
                                   &value[1], &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "action=", 7) == 0) {
            for (action = 0; action < 3; action++) {
                if (value[i].len - 7 == ngx_http_vetting_actions[action].len
                    && ngx_strncmp(value[i].data + 7,
                                   ngx_http_vetting_actions[action].data,
                                   value[i].len - 7)
                       == 0)
                {
                    break;
                }
            }

            if (action == 3) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "rule \"%V\": invalid action \"%V\", "
                                   "expected \"log\", \"reject\" or "
                                   "\"block\"", &value[1], &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strcmp(value[i].data, "scope=global") == 0) {
            rule->tenant = 0;
            continue;
        }

        if (ngx_strcmp(value[i].data, "scope=tenant") == 0) {
            rule->tenant = 1;
            continue;
        }

        if (ngx_strcmp(value[i].data, "fail=open") == 0) {
            rule->fail_closed = 0;
            continue;
        }

        if (ngx_strcmp(value[i].data, "fail=closed") == 0) {
            rule->fail_closed = 1;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "rule \"%V\": invalid parameter \"%V\"",
                           &value[1], &value[i]);
        return NGX_CONF_ERROR;
    }

    if (rule->threshold == 0 || window == 0
        || action == NGX_CONF_UNSET_UINT)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "rule \"%V\" needs \"threshold=\", \"window=\" "
                           "and \"action=\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    if (rule->event == NGX_HTTP_VETTING_EV_UNKNOWN
        && action == NGX_HTTP_VETTING_BLOCK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "rule \"%V\" counts client addresses, not apps: "
                           "its action can be \"log\" or \"reject\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    rule->action = action;
    rule->window = window;

    if (ngx_http_vetting_text(cf, &rule->text) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    vmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_vetting_module);

    text = ngx_array_push(&vmcf->policy_rules);
    if (text == NULL) {
        return NGX_CONF_ERROR;
    }

    *text = rule->text;

    return NGX_CONF_OK;
}


/* the directive's arguments as one line, for evidence and logs */

static ngx_int_t
ngx_http_vetting_text(ngx_conf_t *cf, ngx_str_t *text)
{
    u_char      *p;
    size_t       len;
    ngx_str_t   *value;
    ngx_uint_t   i;

    value = cf->args->elts;
    len = 0;

    for (i = 1; i < cf->args->nelts; i++) {
        len += value[i].len + 1;
    }

    p = ngx_pnalloc(cf->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    text->data = p;

    for (i = 1; i < cf->args->nelts; i++) {
        if (i > 1) {
            *p++ = ' ';
        }

        p = ngx_cpymem(p, value[i].data, value[i].len);
    }

    text->len = p - text->data;

    return NGX_OK;
}


static char *
ngx_http_vetting_countries(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_vetting_loc_conf_t *vlcf = conf;

    ngx_str_t   *value, *cc;
    ngx_uint_t   i;

    if (vlcf->countries != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    vlcf->countries = ngx_array_create(cf->pool, cf->args->nelts,
                                       sizeof(ngx_str_t));
    if (vlcf->countries == NULL) {
        return NGX_CONF_ERROR;
    }

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        return NGX_CONF_OK;
    }

    for (i = 1; i < cf->args->nelts; i++) {

        if (value[i].len != 2
            || value[i].data[0] < 'A' || value[i].data[0] > 'Z'
            || value[i].data[1] < 'A' || value[i].data[1] > 'Z')
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid country \"%V\", expected an "
                               "upper-case ISO 3166-1 alpha-2 code such as "
                               "\"US\" or \"PR\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        cc = ngx_array_push(vlcf->countries);
        if (cc == NULL) {
            return NGX_CONF_ERROR;
        }

        *cc = value[i];
    }

    return NGX_CONF_OK;
}
