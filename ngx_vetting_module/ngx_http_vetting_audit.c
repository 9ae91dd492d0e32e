
/*
 * Copyright (C) ngx_vetting_module authors
 *
 * Audit events: one FHIR R4 AuditEvent per refusal and per suspension,
 * as a JSON line in the audit log and, with Redis, in the stream the
 * security review reads.  The request is recorded without the values
 * of query parameters that may carry secrets.
 */


#include "ngx_http_vetting_module.h"


#define NGX_HTTP_VETTING_AUDIT_MAX  16384


static void ngx_http_vetting_audit_write(ngx_http_vetting_main_conf_t *vmcf,
    vetting_audit_event_t *ev, ngx_log_t *log);
static ngx_int_t ngx_http_vetting_audit_id(ngx_http_vetting_main_conf_t *vmcf,
    u_char *buf, vetting_str_t *id);


static ngx_str_t  ngx_http_vetting_audit_interactions[] = {
    ngx_null_string,
    ngx_string("read"),
    ngx_string("vread"),
    ngx_string("history-instance"),
    ngx_string("search-type"),
    ngx_string("search-system"),
    ngx_string("search-type"),
    ngx_string("capabilities"),
    ngx_string("operation"),
    ngx_string("create"),
    ngx_string("update"),
    ngx_string("patch"),
    ngx_string("delete"),
    ngx_string("batch"),
    ngx_string("capabilities")
};


void
ngx_http_vetting_audit(ngx_http_request_t *r, ngx_http_vetting_ctx_t *ctx,
    vetting_audit_kind_e kind, ngx_str_t *description,
    vetting_audit_detail_t *details, ngx_uint_t ndetails)
{
    u_char                        *uri, *p, idbuf[128];
    size_t                         len;
    vetting_audit_event_t          ev;
    ngx_http_vetting_main_conf_t  *vmcf;

    vmcf = ngx_http_get_module_main_conf(r, ngx_http_vetting_module);

    if (vmcf->audit_file == NULL
        && (vmcf->redis == NULL || vmcf->audit_stream == 0))
    {
        return;
    }

    ngx_memzero(&ev, sizeof(vetting_audit_event_t));

    if (ngx_http_vetting_audit_id(vmcf, idbuf, &ev.id) != NGX_OK) {
        return;
    }

    ev.kind = kind;
    ev.time_ms = ngx_http_vetting_now();
    ev.reason = (kind == VETTING_AUDIT_DRY_RUN) ? "dry-run"
                                                : (char *) ctx->rule.data;
    ev.description.data = description->data;
    ev.description.len = description->len;

    if (ctx->endpoint == NGX_HTTP_VETTING_FHIR) {
        ev.action = ctx->fhir.action;
        ev.interaction = (char *)
            ngx_http_vetting_audit_interactions[ctx->fhir.interaction].data;

    } else {
        ev.action = 'E';
    }

    ev.app.data = ctx->app.data;
    ev.app.len = ctx->app.len;
    ev.member.data = ctx->member.data;
    ev.member.len = ctx->member.len;
    ev.address.data = ctx->address.data;
    ev.address.len = ctx->address.len;
    ev.tenant.data = ctx->tenant.data;
    ev.tenant.len = ctx->tenant.len;
    ev.gateway.data = vmcf->gateway.data;
    ev.gateway.len = vmcf->gateway.len;

    if (ctx->geo_known) {
        ev.country.data = (u_char *) ctx->country;
        ev.country.len = ngx_strlen(ctx->country);
    }

    ev.method.data = r->method_name.data;
    ev.method.len = r->method_name.len;

    /* the path, and the query without values that may be secrets */

    len = r->uri.len + 1 + 2 * r->args.len + 64;

    uri = ngx_pnalloc(r->pool, len);
    if (uri == NULL) {
        return;
    }

    p = ngx_cpymem(uri, r->uri.data, r->uri.len);

    if (r->args.len) {
        *p++ = '?';
        p += vetting_redact_query(r->args.data, r->args.len, (char *) p,
                                  len - (p - uri));
    }

    ev.uri.data = uri;
    ev.uri.len = p - uri;

    ev.status = (kind == VETTING_AUDIT_REFUSAL) ? ctx->status : 0;
    ev.details = details;
    ev.ndetails = ndetails;

    ngx_http_vetting_audit_write(vmcf, &ev, r->connection->log);
}


/* a suspension, decided here or reported by Redis */

void
ngx_http_vetting_audit_block(ngx_log_t *log,
    ngx_http_vetting_main_conf_t *vmcf, ngx_http_vetting_block_t *blk,
    ngx_str_t *description, vetting_audit_detail_t *details,
    ngx_uint_t ndetails)
{
    u_char                 idbuf[128];
    vetting_audit_event_t  ev;

    if (vmcf->audit_file == NULL
        && (vmcf->redis == NULL || vmcf->audit_stream == 0))
    {
        return;
    }

    ngx_memzero(&ev, sizeof(vetting_audit_event_t));

    if (ngx_http_vetting_audit_id(vmcf, idbuf, &ev.id) != NGX_OK) {
        return;
    }

    ev.kind = VETTING_AUDIT_BLOCK;
    ev.time_ms = blk->since ? blk->since : ngx_http_vetting_now();
    ev.reason = "suspended";
    ev.description.data = description->data;
    ev.description.len = description->len;
    ev.action = 'E';
    ev.app.data = blk->app.data;
    ev.app.len = blk->app.len;
    ev.gateway.data = vmcf->gateway.data;
    ev.gateway.len = vmcf->gateway.len;

    if (!(blk->scope.len == 1 && blk->scope.data[0] == '*')) {
        ev.tenant.data = blk->scope.data;
        ev.tenant.len = blk->scope.len;
    }

    ev.details = details;
    ev.ndetails = ndetails;

    ngx_http_vetting_audit_write(vmcf, &ev, log);
}


/* "<gateway>-<zone boot>-<sequence>": unique on the fleet */

static ngx_int_t
ngx_http_vetting_audit_id(ngx_http_vetting_main_conf_t *vmcf, u_char *buf,
    vetting_str_t *id)
{
    u_char                  *p;
    ngx_http_vetting_shm_t  *shm;

    shm = vmcf->shm_zone->data;

    p = ngx_snprintf(buf, 128, "%*s-%uxL-%uL",
                     (size_t) ngx_min(vmcf->gateway.len, 64),
                     vmcf->gateway.data, shm->sh->boot,
                     ngx_http_vetting_next_id(shm));

    id->data = buf;
    id->len = p - buf;

    return NGX_OK;
}


static void
ngx_http_vetting_audit_write(ngx_http_vetting_main_conf_t *vmcf,
    vetting_audit_event_t *ev, ngx_log_t *log)
{
    u_char     *buf;
    size_t      len;
    ssize_t     n;
    ngx_str_t   id;

    buf = ngx_alloc(NGX_HTTP_VETTING_AUDIT_MAX, log);
    if (buf == NULL) {
        return;
    }

    if (vetting_audit_format(ev, buf, NGX_HTTP_VETTING_AUDIT_MAX - 1, &len)
        != VETTING_OK)
    {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "vetting: audit event could not be written "
                      "(too large), event \"%*s\" lost",
                      ev->id.len, ev->id.data);
        ngx_free(buf);
        return;
    }

    if (vmcf->audit_file) {
        buf[len] = '\n';

        /* one write() of an O_APPEND file: lines never interleave */

        n = ngx_write_fd(vmcf->audit_file->fd, buf, len + 1);

        if (n != (ssize_t) len + 1) {
            ngx_log_error(NGX_LOG_ALERT, log, ngx_errno,
                          ngx_write_fd_n " to \"%s\" failed",
                          vmcf->audit_file->name.data);
        }
    }

    if (vmcf->redis && vmcf->audit_stream) {
        id.data = (u_char *) ev->id.data;
        id.len = ev->id.len;

        ngx_http_vetting_redis_audit(&id, buf, len, log);
    }

    ngx_free(buf);
}
