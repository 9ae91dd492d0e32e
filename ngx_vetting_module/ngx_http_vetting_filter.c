
/*
 * Copyright (C) ngx_vetting_module authors
 *
 * Learning from responses.  A token endpoint's successful response is
 * parsed as it streams through (yajl, in vetting_token.c): its access
 * and refresh tokens, as SHA-256 digests, lead to the app and the member
 * from then on, on every gateway.  An authorization endpoint's redirect
 * carries the code it issued; its digest is kept so that a code issued
 * before a confirmed block stays dead.  The response itself passes
 * unchanged.
 */


#include "ngx_http_vetting_module.h"


static ngx_int_t ngx_http_vetting_header_filter(ngx_http_request_t *r);
static ngx_int_t ngx_http_vetting_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static void ngx_http_vetting_learn_code(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx);
static ngx_table_elt_t *ngx_http_vetting_location(ngx_http_request_t *r);
static ngx_int_t ngx_http_vetting_feed(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, ngx_buf_t *b);
static void ngx_http_vetting_learn(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx, vetting_token_info_t *info);
static void ngx_http_vetting_parser_failed(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


ngx_int_t
ngx_http_vetting_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_vetting_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_vetting_body_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_http_vetting_header_filter(ngx_http_request_t *r)
{
    ngx_http_vetting_ctx_t  *ctx;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_vetting_module);

    if (ctx == NULL || ctx->refusal || !ctx->done) {
        return ngx_http_next_header_filter(r);
    }

    if (ctx->endpoint == NGX_HTTP_VETTING_AUTHORIZE) {
        ngx_http_vetting_learn_code(r, ctx);
        return ngx_http_next_header_filter(r);
    }

    if (ctx->endpoint != NGX_HTTP_VETTING_TOKEN
        || !ctx->learn
        || r->headers_out.status != NGX_HTTP_OK)
    {
        return ngx_http_next_header_filter(r);
    }

    if (r->headers_out.content_encoding
        && r->headers_out.content_encoding->value.len)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "vetting: token response is encoded (\"%V\"), its "
                      "tokens are not learned; send the token endpoint "
                      "\"Accept-Encoding\" \"\"",
                      &r->headers_out.content_encoding->value);
        return ngx_http_next_header_filter(r);
    }

    ctx->parser = vetting_token_parser_create(NGX_HTTP_VETTING_RESPONSE_MAX,
                                              NGX_HTTP_VETTING_DEPTH_MAX);
    if (ctx->parser == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "vetting: no memory to parse a token response");
    }

    return ngx_http_next_header_filter(r);
}


static ngx_int_t
ngx_http_vetting_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_chain_t             *cl;
    vetting_token_info_t     info;
    ngx_http_vetting_ctx_t  *ctx;

    if (r != r->main || in == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_vetting_module);

    if (ctx == NULL || ctx->parser == NULL) {
        return ngx_http_next_body_filter(r, in);
    }

    for (cl = in; cl; cl = cl->next) {

        if (ngx_http_vetting_feed(r, ctx, cl->buf) != NGX_OK) {
            ngx_http_vetting_parser_failed(r, ctx);
            break;
        }

        if (!cl->buf->last_buf) {
            continue;
        }

        if (vetting_token_parser_finish(ctx->parser, &info) != VETTING_OK) {
            ngx_http_vetting_parser_failed(r, ctx);
            break;
        }

        vetting_token_parser_free(ctx->parser);
        ctx->parser = NULL;

        ngx_http_vetting_learn(r, ctx, &info);
        break;
    }

    return ngx_http_next_body_filter(r, in);
}


/* one buffer of the response, in memory or in a temporary file */

static ngx_int_t
ngx_http_vetting_feed(ngx_http_request_t *r, ngx_http_vetting_ctx_t *ctx,
    ngx_buf_t *b)
{
    u_char   buf[4096];
    off_t    pos;
    size_t   size;
    ssize_t  n;

    if (ngx_buf_in_memory(b)) {

        if (b->last > b->pos
            && vetting_token_parser_feed(ctx->parser, b->pos,
                                         b->last - b->pos)
               != VETTING_OK)
        {
            return NGX_ERROR;
        }

        return NGX_OK;
    }

    if (!b->in_file || b->file == NULL) {
        return NGX_OK;
    }

    for (pos = b->file_pos; pos < b->file_last; pos += n) {
        size = (size_t) ngx_min(b->file_last - pos, (off_t) sizeof(buf));

        n = ngx_read_file(b->file, buf, size, pos);

        if (n == NGX_ERROR || n == 0) {
            return NGX_ERROR;
        }

        if (vetting_token_parser_feed(ctx->parser, buf, n) != VETTING_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static void
ngx_http_vetting_parser_failed(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx)
{
    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "vetting: token response of app \"%V\" not learned: %s",
                  &ctx->app, vetting_token_parser_error(ctx->parser));

    vetting_token_parser_free(ctx->parser);
    ctx->parser = NULL;
}


/*
 * The authorization server answered 200 with tokens: the app the
 * request named is proven, its tokens are learned, and a code exchange
 * counts one member authorization.
 */

static void
ngx_http_vetting_learn(ngx_http_request_t *r, ngx_http_vetting_ctx_t *ctx,
    vetting_token_info_t *info)
{
    int64_t                        now;
    ngx_http_vetting_token_t       tok;
    ngx_http_vetting_main_conf_t  *vmcf;

    if (!info->has_access) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "vetting: token response of app \"%V\" has no "
                      "access token", &ctx->app);
        return;
    }

    if (ctx->app.len == 0) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "vetting: token issued to a client the request did "
                      "not name, not learned");
        return;
    }

    vmcf = ngx_http_get_module_main_conf(r, ngx_http_vetting_module);
    now = ngx_http_vetting_now();

    ctx->identity = NGX_HTTP_VETTING_ID_PROVEN;

    if (info->has_member) {
        ctx->member.data = ngx_pnalloc(r->pool, info->member_len);
        if (ctx->member.data == NULL) {
            return;
        }

        ngx_memcpy(ctx->member.data, info->member, info->member_len);
        ctx->member.len = info->member_len;

    } else if (info->bad_member) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "vetting: token response of app \"%V\" has a "
                      "\"patient\" that is not a FHIR id, ignored",
                      &ctx->app);
    }

    if (info->bad_lifetime) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "vetting: token response of app \"%V\" has an "
                      "unusable \"expires_in\", the default lifetime "
                      "applies", &ctx->app);
    }

    ngx_memzero(&tok, sizeof(ngx_http_vetting_token_t));

    tok.kind = NGX_HTTP_VETTING_ACCESS;
    tok.issued = now;
    tok.expires = now + (info->has_lifetime
                         ? info->expires_in * 1000
                         : (int64_t) vmcf->token_lifetime);
    tok.app = ctx->app;
    tok.member = ctx->member;
    tok.tenant = ctx->tenant;

    ngx_http_vetting_token_put(vmcf->shm_zone->data, info->access_digest,
                               &tok, r->connection->log);

    if (vmcf->redis) {
        ngx_http_vetting_redis_token(info->access_digest, &tok,
                                     r->connection->log);
    }

    if (info->has_refresh) {
        tok.kind = NGX_HTTP_VETTING_REFRESH;
        tok.expires = now + (int64_t) vmcf->refresh_lifetime;

        ngx_http_vetting_token_put(vmcf->shm_zone->data,
                                   info->refresh_digest, &tok,
                                   r->connection->log);

        if (vmcf->redis) {
            ngx_http_vetting_redis_token(info->refresh_digest, &tok,
                                         r->connection->log);
        }
    }

    ctx->learned = 1;

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "vetting: learned a token of app \"%V\" for member "
                   "\"%V\", %L ms", &ctx->app, &ctx->member,
                   tok.expires - now);

    if (ctx->grant == NGX_HTTP_VETTING_CODE && ctx->member.len) {
        ngx_http_vetting_member_authorized(r, ctx);
    }
}


/* the code in the redirect of an authorization endpoint */

static void
ngx_http_vetting_learn_code(ngx_http_request_t *r,
    ngx_http_vetting_ctx_t *ctx)
{
    u_char                        *q;
    char                           code[1024];
    size_t                         len;
    int64_t                        now;
    ngx_table_elt_t               *h;
    ngx_http_vetting_token_t       tok;
    ngx_http_vetting_main_conf_t  *vmcf;
    u_char                         digest[VETTING_DIGEST_LEN];

    if (r->headers_out.status != NGX_HTTP_MOVED_TEMPORARILY
        && r->headers_out.status != NGX_HTTP_SEE_OTHER)
    {
        return;
    }

    h = ngx_http_vetting_location(r);
    if (h == NULL) {
        return;
    }

    q = ngx_strlchr(h->value.data, h->value.data + h->value.len, '?');
    if (q == NULL) {
        return;
    }

    q++;

    if (vetting_form_get(q, h->value.data + h->value.len - q, "code", code,
                         sizeof(code), &len)
        != VETTING_OK
        || len == 0)
    {
        return;
    }

    vmcf = ngx_http_get_module_main_conf(r, ngx_http_vetting_module);
    now = ngx_http_vetting_now();

    if (vetting_digest((u_char *) code, len, digest) != VETTING_OK) {
        return;
    }

    ngx_memzero(&tok, sizeof(ngx_http_vetting_token_t));

    tok.kind = NGX_HTTP_VETTING_CODE;
    tok.issued = now;
    tok.expires = now + (int64_t) vmcf->code_lifetime;
    tok.app = ctx->app;
    tok.tenant = ctx->tenant;

    ngx_http_vetting_token_put(vmcf->shm_zone->data, digest, &tok,
                               r->connection->log);

    if (vmcf->redis) {
        ngx_http_vetting_redis_token(digest, &tok, r->connection->log);
    }
}


/*
 * The Location of a redirect.  The proxy module sets headers_out.location
 * only for a Location that proxy_redirect rewrote, not for the absolute
 * redirect_uri of an app, which stays in the list alone.
 */

static ngx_table_elt_t *
ngx_http_vetting_location(ngx_http_request_t *r)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    if (r->headers_out.location) {
        return r->headers_out.location;
    }

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash
            && h[i].key.len == sizeof("Location") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Location",
                               sizeof("Location") - 1)
               == 0)
        {
            return &h[i];
        }
    }
}
