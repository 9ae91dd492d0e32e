
/*
 * Copyright (C) ngx_vetting_module authors
 *
 * The shared-memory zone: learned credentials, rate buckets and rule
 * counters in one red-black tree with an LRU queue (the way limit_req
 * keeps its state), the mirror of suspensions in a tree of its own that
 * is never evicted, and the outbox of commands waiting for Redis.
 */


#include "ngx_http_vetting_module.h"


#define NGX_HTTP_VETTING_NODE_TOKEN    'T'
#define NGX_HTTP_VETTING_NODE_BUCKET   'B'
#define NGX_HTTP_VETTING_NODE_COUNTER  'C'
#define NGX_HTTP_VETTING_NODE_MEMBER   'M'

#define NGX_HTTP_VETTING_KEY_MAX       512

/* unused leased requests are dropped after this long (ms) */
#define NGX_HTTP_VETTING_LEASE_TTL     1000

/* the largest lease asked for at once */
#define NGX_HTTP_VETTING_LEASE_MAX     256

/* nodes of the LRU queue one pass of eviction looks at, at most */
#define NGX_HTTP_VETTING_EXPIRE_SCAN   1024

/* the outbox may take at most this part of the zone (1/n) */
#define NGX_HTTP_VETTING_OUTBOX_SHARE  4


typedef struct {
    u_char                       color;
    u_char                       type;
    u_short                      len;         /* of the key */
    uint32_t                     size;        /* of the value */
    ngx_queue_t                  queue;
    int64_t                      expires;     /* ms, 0 for none */
    u_char                       data[1];     /* value, then key */
} ngx_http_vetting_node_t;


typedef struct {
    int64_t                      issued;
    int64_t                      expires;
    u_char                       kind;
    u_char                       app_len;
    u_char                       member_len;
    u_char                       tenant_len;
    u_char                       str[4];
} ngx_http_vetting_token_node_t;


typedef struct {
    vetting_bucket_t             local;
    int64_t                      lease;
    int64_t                      lease_expires;
    int64_t                      retry_at;
    int64_t                      remaining;   /* redis's, -1 unknown */
    int64_t                      fetching;    /* prefetch sent until */
} ngx_http_vetting_bucket_node_t;


typedef struct {
    vetting_window_t             local;
    uint64_t                     pending;
    uint64_t                     inflight;
    uint64_t                     flush_id;
    int64_t                      inflight_until;
    uint64_t                     remote;
    int64_t                      remote_at;
    int64_t                      fired;
    ngx_queue_t                  dirty;
    u_char                       is_dirty;
    u_char                       rule_len;
    u_char                       rule[128];
} ngx_http_vetting_counter_node_t;


typedef struct {
    u_char                       color;
    u_char                       confirmed;
    u_short                      len;         /* app '\0' scope */
    ngx_queue_t                  queue;
    int64_t                      since;
    int64_t                      revoked;
    uint64_t                     generation;
    u_char                       rule[16];
    u_char                       data[1];
} ngx_http_vetting_block_node_t;


typedef struct {
    ngx_queue_t                  queue;
    ngx_queue_t                  kind_queue;  /* of the same kind */
    uint64_t                     id;
    int64_t                      until;       /* in flight until, ms */
    ngx_uint_t                   attempts;
    ngx_uint_t                   kind;
    size_t                       len;
    u_char                       data[1];
} ngx_http_vetting_entry_t;


static void ngx_http_vetting_rbtree_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_http_vetting_node_t *ngx_http_vetting_lookup(
    ngx_http_vetting_shm_t *shm, u_char *key, size_t len, uint32_t hash);
static ngx_http_vetting_node_t *ngx_http_vetting_create(
    ngx_http_vetting_shm_t *shm, u_char type, u_char *key, size_t len,
    uint32_t hash, size_t size, int64_t now, ngx_log_t *log);
static void ngx_http_vetting_delete(ngx_http_vetting_shm_t *shm,
    ngx_http_vetting_node_t *vn);
static void *ngx_http_vetting_alloc(ngx_http_vetting_shm_t *shm,
    size_t size, int64_t now);
static void ngx_http_vetting_expire(ngx_http_vetting_shm_t *shm,
    int64_t now, ngx_uint_t n, ngx_uint_t force);
static size_t ngx_http_vetting_bucket_key(u_char *key,
    ngx_http_vetting_rate_t *rate, ngx_str_t *subject);
static size_t ngx_http_vetting_counter_key(u_char *key, ngx_uint_t by,
    ngx_str_t *subject, ngx_str_t *scope, ngx_uint_t event,
    ngx_uint_t action, uint64_t threshold, ngx_msec_t window);
static ngx_http_vetting_bucket_node_t *ngx_http_vetting_bucket_node(
    ngx_http_vetting_shm_t *shm, ngx_http_vetting_rate_t *rate,
    ngx_str_t *subject, int64_t now, ngx_log_t *log);
static uint64_t ngx_http_vetting_counter_estimate(
    ngx_http_vetting_counter_node_t *cn, int64_t now, ngx_msec_t window);
static ngx_http_vetting_block_node_t *ngx_http_vetting_block_lookup(
    ngx_http_vetting_shm_t *shm, u_char *key, size_t len, uint32_t hash);
static void ngx_http_vetting_block_delete(ngx_http_vetting_shm_t *shm,
    ngx_http_vetting_block_node_t *bn);


#define ngx_http_vetting_value(vn)  ((void *) (vn)->data)
#define ngx_http_vetting_key(vn)    ((vn)->data + (vn)->size)
#define ngx_http_vetting_node(n)                                             \
    ((ngx_http_vetting_node_t *) &(n)->color)
#define ngx_http_vetting_rbnode(vn)                                          \
    ((ngx_rbtree_node_t *) ((u_char *) (vn)                                  \
                            - offsetof(ngx_rbtree_node_t, color)))


ngx_int_t
ngx_http_vetting_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_vetting_shm_t  *oshm = data;

    size_t                   len;
    ngx_uint_t               i;
    ngx_http_vetting_shm_t  *shm;

    shm = shm_zone->data;

    if (oshm) {

        /* a reload that kept the zone: keep everything in it */

        shm->sh = oshm->sh;
        shm->shpool = oshm->shpool;
        return NGX_OK;
    }

    shm->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        shm->sh = shm->shpool->data;
        return NGX_OK;
    }

    shm->sh = ngx_slab_calloc(shm->shpool, sizeof(ngx_http_vetting_shctx_t));
    if (shm->sh == NULL) {
        return NGX_ERROR;
    }

    shm->shpool->data = shm->sh;

    ngx_rbtree_init(&shm->sh->rbtree, &shm->sh->sentinel,
                    ngx_http_vetting_rbtree_insert_value);
    ngx_queue_init(&shm->sh->lru);

    ngx_rbtree_init(&shm->sh->blocks, &shm->sh->blocks_sentinel,
                    ngx_rbtree_insert_value);
    ngx_queue_init(&shm->sh->blocks_list);

    ngx_queue_init(&shm->sh->outbox);
    ngx_queue_init(&shm->sh->dirty);

    for (i = 0; i < 4; i++) {
        ngx_queue_init(&shm->sh->outbox_kinds[i]);
    }

    /* event ids are "<boot>-<seq>": boot tells zones apart */

    shm->sh->boot = ((uint64_t) ngx_time() << 24)
                    ^ ((uint64_t) ngx_random() << 8) ^ (uint64_t) ngx_pid;

    len = sizeof(" in vetting zone \"\"") + shm_zone->shm.name.len;

    shm->shpool->log_ctx = ngx_slab_alloc(shm->shpool, len);
    if (shm->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(shm->shpool->log_ctx, " in vetting zone \"%V\"%Z",
                &shm_zone->shm.name);

    shm->shpool->log_nomem = 0;

    return NGX_OK;
}


static void
ngx_http_vetting_rbtree_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t        **p;
    ngx_http_vetting_node_t   *vn, *vnt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            vn = ngx_http_vetting_node(node);
            vnt = ngx_http_vetting_node(temp);

            p = (ngx_memn2cmp(ngx_http_vetting_key(vn),
                              ngx_http_vetting_key(vnt), vn->len, vnt->len)
                 < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


static ngx_http_vetting_node_t *
ngx_http_vetting_lookup(ngx_http_vetting_shm_t *shm, u_char *key, size_t len,
    uint32_t hash)
{
    ngx_int_t                 rc;
    ngx_rbtree_node_t        *node, *sentinel;
    ngx_http_vetting_node_t  *vn;

    node = shm->sh->rbtree.root;
    sentinel = shm->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        /* hash == node->key */

        vn = ngx_http_vetting_node(node);

        rc = ngx_memn2cmp(key, ngx_http_vetting_key(vn), len, vn->len);

        if (rc == 0) {
            return vn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/* the caller holds the zone's mutex */

static ngx_http_vetting_node_t *
ngx_http_vetting_create(ngx_http_vetting_shm_t *shm, u_char type,
    u_char *key, size_t len, uint32_t hash, size_t size, int64_t now,
    ngx_log_t *log)
{
    size_t                    n;
    ngx_rbtree_node_t        *node;
    ngx_http_vetting_node_t  *vn;

    size = ngx_align(size, sizeof(int64_t));

    n = offsetof(ngx_rbtree_node_t, color)
        + offsetof(ngx_http_vetting_node_t, data) + size + len;

    node = ngx_http_vetting_alloc(shm, n, now);
    if (node == NULL) {
        ngx_log_error(NGX_LOG_ALERT, log, 0,
                      "could not allocate node%s", shm->shpool->log_ctx);
        return NULL;
    }

    node->key = hash;

    vn = ngx_http_vetting_node(node);

    vn->type = type;
    vn->len = (u_short) len;
    vn->size = (uint32_t) size;
    vn->expires = 0;

    ngx_memzero(vn->data, size);
    ngx_memcpy(ngx_http_vetting_key(vn), key, len);

    ngx_rbtree_insert(&shm->sh->rbtree, node);
    ngx_queue_insert_head(&shm->sh->lru, &vn->queue);

    return vn;
}


static void
ngx_http_vetting_delete(ngx_http_vetting_shm_t *shm,
    ngx_http_vetting_node_t *vn)
{
    ngx_http_vetting_counter_node_t  *cn;

    if (vn->type == NGX_HTTP_VETTING_NODE_COUNTER) {
        cn = ngx_http_vetting_value(vn);

        if (cn->is_dirty) {
            ngx_queue_remove(&cn->dirty);
        }
    }

    ngx_queue_remove(&vn->queue);
    ngx_rbtree_delete(&shm->sh->rbtree, ngx_http_vetting_rbnode(vn));
    ngx_slab_free_locked(shm->shpool, ngx_http_vetting_rbnode(vn));
}


/*
 * Allocates from the zone; when it is full, frees expired entries and
 * then the least recently used ones, the way limit_req does.
 */

static void *
ngx_http_vetting_alloc(ngx_http_vetting_shm_t *shm, size_t size,
    int64_t now)
{
    void  *p;

    p = ngx_slab_alloc_locked(shm->shpool, size);
    if (p) {
        return p;
    }

    ngx_http_vetting_expire(shm, now, 64, 1);

    return ngx_slab_alloc_locked(shm->shpool, size);
}


/*
 * Frees up to n nodes from the tail of the LRU queue: expired ones, or,
 * with force, live ones too.  What only the zone knows of an app goes
 * last, so that a flood of new subjects cannot push it out: learned
 * credentials are freed only when nothing else near the tail can be,
 * and an app's counts not yet sent to Redis never.  At most
 * NGX_HTTP_VETTING_EXPIRE_SCAN nodes are looked at in a pass.
 */

static void
ngx_http_vetting_expire(ngx_http_vetting_shm_t *shm, int64_t now,
    ngx_uint_t n, ngx_uint_t force)
{
    ngx_uint_t                        pass, scan;
    ngx_queue_t                      *q, *prev;
    ngx_http_vetting_node_t          *vn;
    ngx_http_vetting_token_node_t    *tn;
    ngx_http_vetting_counter_node_t  *cn;

    for (pass = 0; pass < (force ? 2 : 1) && n; pass++) {

        scan = 0;

        for (q = ngx_queue_last(&shm->sh->lru);
             q != ngx_queue_sentinel(&shm->sh->lru)
             && n && scan++ < NGX_HTTP_VETTING_EXPIRE_SCAN;
             q = prev)
        {
            prev = ngx_queue_prev(q);

            vn = ngx_queue_data(q, ngx_http_vetting_node_t, queue);

            if (vn->expires == 0 || vn->expires > now) {

                if (!force) {
                    continue;
                }

                if (vn->type == NGX_HTTP_VETTING_NODE_COUNTER) {
                    cn = ngx_http_vetting_value(vn);

                    if (cn->is_dirty
                        && ngx_http_vetting_key(vn)[1]
                           == NGX_HTTP_VETTING_BY_APP)
                    {
                        continue;
                    }
                }

                if (vn->type == NGX_HTTP_VETTING_NODE_TOKEN && pass == 0) {
                    tn = ngx_http_vetting_value(vn);

                    if (tn->kind != NGX_HTTP_VETTING_UNKNOWN) {
                        continue;
                    }
                }
            }

            ngx_http_vetting_delete(shm, vn);
            n--;
        }
    }
}


ngx_int_t
ngx_http_vetting_token_get(ngx_http_vetting_shm_t *shm, u_char *digest,
    ngx_http_vetting_token_t *tok, ngx_pool_t *pool, int64_t now)
{
    u_char                         *p;
    uint32_t                        hash;
    ngx_int_t                       rc;
    ngx_http_vetting_node_t        *vn;
    ngx_http_vetting_token_node_t  *tn;

    hash = ngx_murmur_hash2(digest, VETTING_DIGEST_LEN);

    ngx_shmtx_lock(&shm->shpool->mutex);

    vn = ngx_http_vetting_lookup(shm, digest, VETTING_DIGEST_LEN, hash);

    if (vn == NULL || vn->type != NGX_HTTP_VETTING_NODE_TOKEN) {
        rc = NGX_DECLINED;
        goto done;
    }

    if (vn->expires && vn->expires <= now) {
        ngx_http_vetting_delete(shm, vn);
        rc = NGX_DECLINED;
        goto done;
    }

    ngx_queue_remove(&vn->queue);
    ngx_queue_insert_head(&shm->sh->lru, &vn->queue);

    tn = ngx_http_vetting_value(vn);

    tok->kind = tn->kind;
    tok->issued = tn->issued;
    tok->expires = tn->expires;

    p = ngx_pnalloc(pool, tn->app_len + tn->member_len + tn->tenant_len + 1);
    if (p == NULL) {
        rc = NGX_ERROR;
        goto done;
    }

    ngx_memcpy(p, tn->str, tn->app_len + tn->member_len + tn->tenant_len);

    tok->app.data = p;
    tok->app.len = tn->app_len;
    tok->member.data = p + tn->app_len;
    tok->member.len = tn->member_len;
    tok->tenant.data = p + tn->app_len + tn->member_len;
    tok->tenant.len = tn->tenant_len;

    rc = NGX_OK;

done:

    ngx_shmtx_unlock(&shm->shpool->mutex);

    return rc;
}


void
ngx_http_vetting_token_put(ngx_http_vetting_shm_t *shm, u_char *digest,
    ngx_http_vetting_token_t *tok, ngx_log_t *log)
{
    size_t                          size;
    uint32_t                        hash;
    ngx_http_vetting_node_t        *vn;
    ngx_http_vetting_token_node_t  *tn;

    if (tok->app.len > VETTING_APP_MAX
        || tok->member.len > VETTING_MEMBER_MAX
        || tok->tenant.len > VETTING_TENANT_MAX)
    {
        return;
    }

    hash = ngx_murmur_hash2(digest, VETTING_DIGEST_LEN);
    size = offsetof(ngx_http_vetting_token_node_t, str)
           + tok->app.len + tok->member.len + tok->tenant.len;

    ngx_shmtx_lock(&shm->shpool->mutex);

    vn = ngx_http_vetting_lookup(shm, digest, VETTING_DIGEST_LEN, hash);

    if (vn) {
        ngx_http_vetting_delete(shm, vn);
    }

    vn = ngx_http_vetting_create(shm, NGX_HTTP_VETTING_NODE_TOKEN, digest,
                                 VETTING_DIGEST_LEN, hash, size,
                                 tok->issued, log);
    if (vn == NULL) {
        ngx_shmtx_unlock(&shm->shpool->mutex);
        return;
    }

    vn->expires = tok->expires;

    tn = ngx_http_vetting_value(vn);

    tn->kind = tok->kind;
    tn->issued = tok->issued;
    tn->expires = tok->expires;
    tn->app_len = (u_char) tok->app.len;
    tn->member_len = (u_char) tok->member.len;
    tn->tenant_len = (u_char) tok->tenant.len;

    ngx_memcpy(ngx_cpymem(ngx_cpymem(tn->str, tok->app.data, tok->app.len),
                          tok->member.data, tok->member.len),
               tok->tenant.data, tok->tenant.len);

    ngx_shmtx_unlock(&shm->shpool->mutex);
}


/* suspensions and revocations */

static size_t
ngx_http_vetting_block_key(u_char *key, ngx_str_t *app, ngx_str_t *scope)
{
    u_char  *p;

    p = ngx_cpymem(key, app->data, app->len);
    *p++ = '\0';
    p = ngx_cpymem(p, scope->data, scope->len);

    return p - key;
}


static ngx_http_vetting_block_node_t *
ngx_http_vetting_block_lookup(ngx_http_vetting_shm_t *shm, u_char *key,
    size_t len, uint32_t hash)
{
    ngx_int_t                       rc;
    ngx_rbtree_node_t              *node, *sentinel;
    ngx_http_vetting_block_node_t  *bn;

    node = shm->sh->blocks.root;
    sentinel = shm->sh->blocks.sentinel;

    while (node != sentinel) {

        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        bn = (ngx_http_vetting_block_node_t *) &node->color;

        rc = ngx_memn2cmp(key, bn->data, len, bn->len);

        if (rc == 0) {
            return bn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/*
 * Finds what applies to an app in a location: a global suspension, or
 * one for the location's tenant.  The earliest suspension and the latest
 * revocation win.
 */

ngx_int_t
ngx_http_vetting_block_get(ngx_http_vetting_shm_t *shm, ngx_str_t *app,
    ngx_str_t *tenant, ngx_http_vetting_block_t *blk)
{
    u_char                          key[NGX_HTTP_VETTING_KEY_MAX];
    size_t                          len;
    ngx_str_t                       scope;
    ngx_uint_t                      i;
    ngx_http_vetting_block_node_t  *bn;

    if (app->len == 0 || app->len + VETTING_TENANT_MAX + 2 > sizeof(key)) {
        return NGX_DECLINED;
    }

    ngx_memzero(blk, sizeof(ngx_http_vetting_block_t));

    if (shm->sh->nblocks == 0) {
        return NGX_DECLINED;
    }

    ngx_shmtx_lock(&shm->shpool->mutex);

    for (i = 0; i < 2; i++) {

        if (i == 0) {
            ngx_str_set(&scope, NGX_HTTP_VETTING_GLOBAL);

        } else {
            if (tenant->len == 0) {
                break;
            }

            scope = *tenant;
        }

        len = ngx_http_vetting_block_key(key, app, &scope);

        bn = ngx_http_vetting_block_lookup(shm, key, len,
                                           ngx_murmur_hash2(key, len));
        if (bn == NULL) {
            continue;
        }

        if (bn->since && (blk->since == 0 || bn->since < blk->since)) {
            blk->since = bn->since;
            blk->confirmed = bn->confirmed;
            blk->scope = scope;
        }

        if (bn->revoked > blk->revoked) {
            blk->revoked = bn->revoked;
        }
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);

    if (blk->since == 0 && blk->revoked == 0) {
        return NGX_DECLINED;
    }

    blk->app = *app;

    return NGX_OK;
}


/*
 * Mirrors one suspension or revocation.  Returns NGX_OK when this put
 * suspended an app not suspended before in that scope (so the caller
 * logs it once), NGX_DECLINED when nothing new happened.
 */

ngx_int_t
ngx_http_vetting_block_put(ngx_http_vetting_shm_t *shm,
    ngx_http_vetting_block_t *blk, uint64_t generation, ngx_log_t *log)
{
    u_char                          key[NGX_HTTP_VETTING_KEY_MAX], c;
    size_t                          len, n, i;
    uint32_t                        hash;
    ngx_int_t                       rc;
    ngx_rbtree_node_t              *node;
    ngx_http_vetting_block_node_t  *bn;

    if (blk->app.len == 0
        || blk->app.len > VETTING_APP_MAX
        || blk->scope.len == 0
        || blk->scope.len > VETTING_TENANT_MAX)
    {
        return NGX_DECLINED;
    }

    len = ngx_http_vetting_block_key(key, &blk->app, &blk->scope);
    hash = ngx_murmur_hash2(key, len);

    ngx_shmtx_lock(&shm->shpool->mutex);

    bn = ngx_http_vetting_block_lookup(shm, key, len, hash);

    if (bn == NULL) {
        n = offsetof(ngx_rbtree_node_t, color)
            + offsetof(ngx_http_vetting_block_node_t, data) + len;

        node = ngx_http_vetting_alloc(shm, n, ngx_http_vetting_now());
        if (node == NULL) {
            ngx_shmtx_unlock(&shm->shpool->mutex);
            ngx_log_error(NGX_LOG_ALERT, log, 0,
                          "could not mirror the suspension of \"%V\"%s",
                          &blk->app, shm->shpool->log_ctx);
            return NGX_ERROR;
        }

        node->key = hash;

        bn = (ngx_http_vetting_block_node_t *) &node->color;

        ngx_memzero(bn, offsetof(ngx_http_vetting_block_node_t, data));
        bn->len = (u_short) len;
        ngx_memcpy(bn->data, key, len);

        ngx_rbtree_insert(&shm->sh->blocks, node);
        ngx_queue_insert_tail(&shm->sh->blocks_list, &bn->queue);
        shm->sh->nblocks++;
    }

    rc = (blk->since && bn->since == 0) ? NGX_OK : NGX_DECLINED;

    /*
     * a suspension keeps its original time: the one Redis recorded,
     * once it replaces the time this gateway noted when it suspended
     */

    if (blk->since
        && (bn->since == 0 || blk->since < bn->since
            || (generation && bn->generation == 0)))
    {
        bn->since = blk->since;
    }

    if (blk->since == 0 && generation) {
        bn->since = 0;
    }

    if (blk->revoked > bn->revoked) {
        bn->revoked = blk->revoked;
    }

    if (blk->confirmed) {
        bn->confirmed = 1;
    }

    /* an event name; what Redis says is kept to its characters */

    n = ngx_min(blk->rule.len, sizeof(bn->rule) - 1);

    for (i = 0; i < n; i++) {
        c = blk->rule.data[i];
        bn->rule[i] = (isalnum(c) || c == '_' || c == '-') ? c : '?';
    }

    if (n) {
        bn->rule[n] = '\0';
    }

    /*
     * the workers read the index at the same time: an older read put
     * late must not leave an entry to the sweep of a newer one
     */

    if (generation > bn->generation) {
        bn->generation = generation;
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);

    return rc;
}


/* the caller holds the zone's mutex */

static void
ngx_http_vetting_block_delete(ngx_http_vetting_shm_t *shm,
    ngx_http_vetting_block_node_t *bn)
{
    ngx_rbtree_node_t  *node;

    node = (ngx_rbtree_node_t *)
               ((u_char *) bn - offsetof(ngx_rbtree_node_t, color));

    ngx_queue_remove(&bn->queue);
    ngx_rbtree_delete(&shm->sh->blocks, node);
    ngx_slab_free_locked(shm->shpool, node);

    shm->sh->nblocks--;
}


/* ends a suspension; a revocation stays unless asked */

void
ngx_http_vetting_block_clear(ngx_http_vetting_shm_t *shm, ngx_str_t *app,
    ngx_str_t *scope, ngx_uint_t revocation)
{
    u_char                          key[NGX_HTTP_VETTING_KEY_MAX];
    size_t                          len;
    ngx_http_vetting_block_node_t  *bn;

    if (app->len > VETTING_APP_MAX || scope->len > VETTING_TENANT_MAX) {
        return;
    }

    len = ngx_http_vetting_block_key(key, app, scope);

    ngx_shmtx_lock(&shm->shpool->mutex);

    bn = ngx_http_vetting_block_lookup(shm, key, len,
                                       ngx_murmur_hash2(key, len));
    if (bn) {
        bn->since = 0;
        bn->confirmed = 0;

        if (revocation) {
            bn->revoked = 0;
        }

        if (bn->revoked == 0) {
            ngx_http_vetting_block_delete(shm, bn);
        }
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);
}


/*
 * After a full read of Redis's index: whatever a put of this generation
 * did not refresh was lifted while this gateway was not listening.
 */

void
ngx_http_vetting_block_sweep(ngx_http_vetting_shm_t *shm,
    uint64_t generation)
{
    ngx_queue_t                    *q, *next;
    ngx_http_vetting_block_node_t  *bn;

    ngx_shmtx_lock(&shm->shpool->mutex);

    for (q = ngx_queue_head(&shm->sh->blocks_list);
         q != ngx_queue_sentinel(&shm->sh->blocks_list);
         q = next)
    {
        next = ngx_queue_next(q);

        bn = ngx_queue_data(q, ngx_http_vetting_block_node_t, queue);

        /*
         * generation 0: suspended here, not yet heard back from Redis
         * (its vt_block may still wait in the outbox)
         */

        if (bn->generation == 0 || bn->generation >= generation) {
            continue;
        }

        ngx_http_vetting_block_delete(shm, bn);
    }

    shm->sh->synced = ngx_http_vetting_now();

    ngx_shmtx_unlock(&shm->shpool->mutex);
}


ngx_uint_t
ngx_http_vetting_blocks_list(ngx_http_vetting_shm_t *shm, ngx_pool_t *pool,
    ngx_array_t *out)
{
    u_char                         *p;
    ngx_queue_t                    *q;
    ngx_http_vetting_block_t       *blk;
    ngx_http_vetting_block_node_t  *bn;

    ngx_shmtx_lock(&shm->shpool->mutex);

    for (q = ngx_queue_head(&shm->sh->blocks_list);
         q != ngx_queue_sentinel(&shm->sh->blocks_list);
         q = ngx_queue_next(q))
    {
        bn = ngx_queue_data(q, ngx_http_vetting_block_node_t, queue);

        blk = ngx_array_push(out);
        if (blk == NULL) {
            break;
        }

        p = ngx_pnalloc(pool, bn->len);
        if (p == NULL) {
            out->nelts--;
            break;
        }

        ngx_memcpy(p, bn->data, bn->len);

        ngx_memzero(blk, sizeof(ngx_http_vetting_block_t));

        blk->app.data = p;
        blk->app.len = ngx_strlen(bn->data);
        blk->scope.data = p + blk->app.len + 1;
        blk->scope.len = bn->len - blk->app.len - 1;
        blk->since = bn->since;
        blk->revoked = bn->revoked;
        blk->confirmed = bn->confirmed;
        blk->rule.len = ngx_strlen(bn->rule);

        if (blk->rule.len) {
            blk->rule.data = ngx_pnalloc(pool, blk->rule.len);
            if (blk->rule.data == NULL) {
                blk->rule.len = 0;

            } else {
                ngx_memcpy(blk->rule.data, bn->rule, blk->rule.len);
            }
        }
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);

    return out->nelts;
}


/* rate buckets */

static size_t
ngx_http_vetting_bucket_key(u_char *key, ngx_http_vetting_rate_t *rate,
    ngx_str_t *subject)
{
    u_char  *p;

    p = key;
    *p++ = NGX_HTTP_VETTING_NODE_BUCKET;
    *p++ = (u_char) rate->per;
    *p++ = (u_char) rate->id.len;
    p = ngx_cpymem(p, rate->id.data, rate->id.len);
    p = ngx_cpymem(p, subject->data, subject->len);

    return p - key;
}


static ngx_http_vetting_bucket_node_t *
ngx_http_vetting_bucket_node(ngx_http_vetting_shm_t *shm,
    ngx_http_vetting_rate_t *rate, ngx_str_t *subject, int64_t now,
    ngx_log_t *log)
{
    u_char                           key[NGX_HTTP_VETTING_KEY_MAX];
    size_t                           len;
    uint32_t                         hash;
    ngx_http_vetting_node_t         *vn;
    ngx_http_vetting_bucket_node_t  *bn;

    len = ngx_http_vetting_bucket_key(key, rate, subject);
    hash = ngx_murmur_hash2(key, len);

    vn = ngx_http_vetting_lookup(shm, key, len, hash);

    if (vn) {
        ngx_queue_remove(&vn->queue);
        ngx_queue_insert_head(&shm->sh->lru, &vn->queue);

    } else {
        ngx_http_vetting_expire(shm, now, 2, 0);

        vn = ngx_http_vetting_create(shm, NGX_HTTP_VETTING_NODE_BUCKET, key,
                                     len, hash,
                                     sizeof(ngx_http_vetting_bucket_node_t),
                                     now, log);
        if (vn == NULL) {
            return NULL;
        }

        bn = ngx_http_vetting_value(vn);
        bn->remaining = -1;
    }

    /* an idle bucket is full again once it could have drained */

    vn->expires = now + (int64_t) (rate->burst * 1000000 * 1000 / rate->rate)
                  + 60000;

    return ngx_http_vetting_value(vn);
}


/*
 * Takes one request from a rate.  Without Redis (shared == 0) the
 * zone's own bucket decides.  With Redis, a request is admitted from
 * requests leased earlier; when the lease is spent the caller asks Redis
 * for another (NGX_AGAIN); while Redis says the limit is exhausted the
 * request is refused without asking.  When the lease runs low, want is
 * set and the caller may prefetch the next lease without waiting.
 */

void
ngx_http_vetting_bucket_take(ngx_http_vetting_shm_t *shm,
    ngx_http_vetting_rate_t *rate, ngx_str_t *subject, ngx_uint_t shared,
    int64_t now, ngx_http_vetting_take_t *take, ngx_log_t *log)
{
    uint64_t                         size;
    ngx_int_t                        rc;
    ngx_http_vetting_bucket_node_t  *bn;

    take->want = 0;
    ngx_memzero(&take->state, sizeof(vetting_bucket_state_t));

    ngx_shmtx_lock(&shm->shpool->mutex);

    bn = ngx_http_vetting_bucket_node(shm, rate, subject, now, log);

    if (bn == NULL) {

        /* no room to keep the state: admit, as limit_req does */

        ngx_shmtx_unlock(&shm->shpool->mutex);
        take->rc = NGX_OK;
        take->state.remaining = rate->burst;
        return;
    }

    if (!shared) {
        rc = vetting_bucket_take(&bn->local, now, rate->rate, rate->burst, 1,
                                 &take->state);
        take->rc = (rc == VETTING_OK) ? NGX_OK : NGX_DECLINED;
        goto done;
    }

    if (bn->lease > 0 && bn->lease_expires <= now) {
        bn->lease = 0;
    }

    if (bn->lease > 0) {
        bn->lease--;

        take->rc = NGX_OK;
        take->state.remaining = bn->lease
                                + (bn->remaining > 0 ? bn->remaining : 0);

        /* running low while Redis has more: prefetch the next lease */

        size = vetting_lease_size(bn->remaining, rate->burst,
                                  NGX_HTTP_VETTING_LEASE_MAX);

        if (!rate->exact
            && bn->remaining > 0
            && bn->lease < (int64_t) size / 2 + 1
            && bn->fetching <= now)
        {
            take->want = size;
            bn->fetching = now + NGX_HTTP_VETTING_LEASE_TTL;
        }

        goto done;
    }

    if (bn->retry_at > now) {
        take->rc = NGX_DECLINED;
        take->state.retry = bn->retry_at - now;
        take->state.reset = take->state.retry;
        goto done;
    }

    take->rc = NGX_AGAIN;
    take->want = rate->exact ? 1
                 : vetting_lease_size(bn->remaining, rate->burst,
                                      NGX_HTTP_VETTING_LEASE_MAX);

done:

    ngx_shmtx_unlock(&shm->shpool->mutex);
}


/*
 * Adds what Redis granted to the lease.  With st set, the request that
 * waited for it takes one: NGX_OK when it could, NGX_DECLINED when the
 * limit is exhausted.
 */

ngx_int_t
ngx_http_vetting_bucket_lease(ngx_http_vetting_shm_t *shm,
    ngx_http_vetting_rate_t *rate, ngx_str_t *subject, int64_t granted,
    int64_t remaining, int64_t retry, int64_t now,
    vetting_bucket_state_t *st)
{
    ngx_int_t                        rc;
    ngx_http_vetting_bucket_node_t  *bn;

    ngx_shmtx_lock(&shm->shpool->mutex);

    bn = ngx_http_vetting_bucket_node(shm, rate, subject, now,
                                      ngx_cycle->log);
    if (bn == NULL) {
        ngx_shmtx_unlock(&shm->shpool->mutex);
        return NGX_OK;
    }

    if (bn->lease > 0 && bn->lease_expires <= now) {
        bn->lease = 0;
    }

    if (granted > 0) {
        bn->lease += granted;
        bn->lease_expires = now + NGX_HTTP_VETTING_LEASE_TTL;
        bn->retry_at = 0;
    }

    bn->remaining = remaining;
    bn->fetching = 0;

    if (granted <= 0 && bn->lease == 0 && retry > 0) {
        bn->retry_at = now + retry;
    }

    rc = NGX_OK;

    if (st) {
        ngx_memzero(st, sizeof(vetting_bucket_state_t));

        if (bn->lease > 0) {
            bn->lease--;
            st->remaining = bn->lease + (remaining > 0 ? remaining : 0);

        } else {
            rc = NGX_DECLINED;
            st->retry = (bn->retry_at > now) ? bn->retry_at - now : 1;
            st->reset = st->retry;
        }
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);

    return rc;
}


/* forgets an app's buckets and leases (the app was reinstated) */

void
ngx_http_vetting_bucket_reset(ngx_http_vetting_shm_t *shm, ngx_str_t *app)
{
    ngx_queue_t              *q, *prev;
    ngx_http_vetting_node_t  *vn;

    ngx_shmtx_lock(&shm->shpool->mutex);

    for (q = ngx_queue_last(&shm->sh->lru);
         q != ngx_queue_sentinel(&shm->sh->lru);
         q = prev)
    {
        prev = ngx_queue_prev(q);

        vn = ngx_queue_data(q, ngx_http_vetting_node_t, queue);

        if (vn->type != NGX_HTTP_VETTING_NODE_BUCKET
            || ngx_http_vetting_key(vn)[1] != NGX_HTTP_VETTING_BY_APP
            || vn->len < 3 + app->len
            || ngx_memcmp(ngx_http_vetting_key(vn) + vn->len - app->len,
                          app->data, app->len)
               != 0
            || vn->len
               != 3 + ngx_http_vetting_key(vn)[2] + app->len)
        {
            continue;
        }

        ngx_http_vetting_delete(shm, vn);
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);
}


/* rule counters */

static size_t
ngx_http_vetting_counter_key(u_char *key, ngx_uint_t by, ngx_str_t *subject,
    ngx_str_t *scope, ngx_uint_t event, ngx_uint_t action,
    uint64_t threshold, ngx_msec_t window)
{
    u_char    *p;
    uint64_t   w;

    w = window;

    p = key;
    *p++ = NGX_HTTP_VETTING_NODE_COUNTER;
    *p++ = (u_char) by;
    *p++ = (u_char) event;
    *p++ = (u_char) action;
    p = ngx_cpymem(p, &w, sizeof(uint64_t));
    p = ngx_cpymem(p, &threshold, sizeof(uint64_t));
    *p++ = (u_char) scope->len;
    p = ngx_cpymem(p, scope->data, scope->len);
    p = ngx_cpymem(p, subject->data, subject->len);

    return p - key;
}


static uint64_t
ngx_http_vetting_counter_estimate(ngx_http_vetting_counter_node_t *cn,
    int64_t now, ngx_msec_t window)
{
    uint64_t  local, fleet;

    local = vetting_window_count(&cn->local, now, window);

    /* what Redis last said, while it still describes the window */

    fleet = 0;

    if (cn->remote_at && now - cn->remote_at < (int64_t) window) {
        fleet = cn->remote + cn->pending + cn->inflight;
    }

    return ngx_max(local, fleet);
}


/*
 * Counts delta events of a rule for a subject; with shared, they are
 * also queued for Redis.  Returns the estimated
 * count over the rule's window on the whole fleet (as far as this
 * gateway knows); *first is set when the count reached the threshold
 * for the first time in this window.
 */

uint64_t
ngx_http_vetting_counter_add(ngx_http_vetting_shm_t *shm, ngx_uint_t by,
    ngx_str_t *subject, ngx_str_t *scope, ngx_http_vetting_rule_t *rule,
    uint64_t delta, ngx_uint_t shared, int64_t now, ngx_uint_t *first,
    ngx_log_t *log)
{
    u_char                            key[NGX_HTTP_VETTING_KEY_MAX];
    size_t                            len, n;
    int64_t                           start;
    uint32_t                          hash;
    uint64_t                          count;
    ngx_http_vetting_node_t          *vn;
    ngx_http_vetting_counter_node_t  *cn;

    *first = 0;

    if (subject->len + scope->len + 32 > sizeof(key)) {
        return 0;
    }

    len = ngx_http_vetting_counter_key(key, by, subject, scope, rule->event,
                                       rule->action, rule->threshold,
                                       rule->window);
    hash = ngx_murmur_hash2(key, len);

    ngx_shmtx_lock(&shm->shpool->mutex);

    vn = ngx_http_vetting_lookup(shm, key, len, hash);

    if (vn == NULL) {
        ngx_http_vetting_expire(shm, now, 2, 0);

        vn = ngx_http_vetting_create(shm, NGX_HTTP_VETTING_NODE_COUNTER, key,
                                     len, hash,
                                     sizeof(ngx_http_vetting_counter_node_t),
                                     now, log);
        if (vn == NULL) {
            ngx_shmtx_unlock(&shm->shpool->mutex);
            return 0;
        }

        cn = ngx_http_vetting_value(vn);

        n = ngx_min(rule->text.len, sizeof(cn->rule));
        ngx_memcpy(cn->rule, rule->text.data, n);
        cn->rule_len = (u_char) n;

    } else {
        ngx_queue_remove(&vn->queue);
        ngx_queue_insert_head(&shm->sh->lru, &vn->queue);
        cn = ngx_http_vetting_value(vn);
    }

    vn->expires = now + 2 * (int64_t) rule->window;

    vetting_window_add(&cn->local, now, rule->window, delta);

    if (shared && delta) {
        cn->pending += delta;

        if (!cn->is_dirty) {
            ngx_queue_insert_tail(&shm->sh->dirty, &cn->dirty);
            cn->is_dirty = 1;
        }
    }

    count = ngx_http_vetting_counter_estimate(cn, now, rule->window);

    start = now - now % (int64_t) rule->window;

    if (count >= rule->threshold && cn->fired != start + 1) {
        cn->fired = start + 1;
        *first = 1;
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);

    return count;
}


uint64_t
ngx_http_vetting_counter_get(ngx_http_vetting_shm_t *shm, ngx_uint_t by,
    ngx_str_t *subject, ngx_str_t *scope, ngx_http_vetting_rule_t *rule,
    int64_t now)
{
    u_char                            key[NGX_HTTP_VETTING_KEY_MAX];
    size_t                            len;
    uint64_t                          count;
    ngx_http_vetting_node_t          *vn;

    if (subject->len + scope->len + 32 > sizeof(key)) {
        return 0;
    }

    len = ngx_http_vetting_counter_key(key, by, subject, scope, rule->event,
                                       rule->action, rule->threshold,
                                       rule->window);

    ngx_shmtx_lock(&shm->shpool->mutex);

    vn = ngx_http_vetting_lookup(shm, key, len, ngx_murmur_hash2(key, len));

    count = vn ? ngx_http_vetting_counter_estimate(ngx_http_vetting_value(vn),
                                                   now, rule->window)
               : 0;

    ngx_shmtx_unlock(&shm->shpool->mutex);

    return count;
}


/* forgets an app's counters and seen members (the app was reinstated) */

void
ngx_http_vetting_counter_reset(ngx_http_vetting_shm_t *shm, ngx_str_t *app)
{
    u_char                   *k;
    size_t                    scope;
    ngx_queue_t              *q, *prev;
    ngx_http_vetting_node_t  *vn;

    ngx_shmtx_lock(&shm->shpool->mutex);

    for (q = ngx_queue_last(&shm->sh->lru);
         q != ngx_queue_sentinel(&shm->sh->lru);
         q = prev)
    {
        prev = ngx_queue_prev(q);

        vn = ngx_queue_data(q, ngx_http_vetting_node_t, queue);
        k = ngx_http_vetting_key(vn);

        /* members already seen: [M][window 8][scope][app][member] */

        if (vn->type == NGX_HTTP_VETTING_NODE_MEMBER) {
            scope = k[9];

            if (vn->len > 11 + scope
                && k[10 + scope] == app->len
                && vn->len > 11 + scope + app->len
                && ngx_memcmp(k + 11 + scope, app->data, app->len) == 0)
            {
                ngx_http_vetting_delete(shm, vn);
            }

            continue;
        }

        if (vn->type != NGX_HTTP_VETTING_NODE_COUNTER
            || k[1] != NGX_HTTP_VETTING_BY_APP
            || vn->len < 21)
        {
            continue;
        }

        scope = k[20];

        if (vn->len != 21 + scope + app->len
            || ngx_memcmp(k + 21 + scope, app->data, app->len) != 0)
        {
            continue;
        }

        ngx_http_vetting_delete(shm, vn);
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);
}


/*
 * Takes up to n counters whose events have not reached Redis yet.  A
 * batch keeps its id until Redis acknowledges it, so a batch sent again
 * after a lost reply is applied once (vt_count remembers ids).
 */

ngx_uint_t
ngx_http_vetting_counter_take(ngx_http_vetting_shm_t *shm,
    ngx_http_vetting_flush_t *out, ngx_uint_t n, int64_t now, int64_t until)
{
    u_char                           *k;
    uint64_t                          w;
    ngx_uint_t                        i;
    ngx_queue_t                      *q;
    ngx_http_vetting_node_t          *vn;
    ngx_http_vetting_counter_node_t  *cn;

    i = 0;

    ngx_shmtx_lock(&shm->shpool->mutex);

    for (q = ngx_queue_head(&shm->sh->dirty);
         q != ngx_queue_sentinel(&shm->sh->dirty) && i < n;
         q = ngx_queue_next(q))
    {
        cn = ngx_queue_data(q, ngx_http_vetting_counter_node_t, dirty);
        vn = (ngx_http_vetting_node_t *)
                 ((u_char *) cn - offsetof(ngx_http_vetting_node_t, data));

        if (cn->inflight) {
            if (cn->inflight_until > now) {
                continue;
            }

        } else if (cn->pending) {
            cn->inflight = cn->pending;
            cn->pending = 0;
            cn->flush_id = ++shm->sh->seq;

        } else {
            continue;
        }

        cn->inflight_until = until;

        k = ngx_http_vetting_key(vn);

        out[i].id = cn->flush_id;
        out[i].delta = cn->inflight;
        out[i].by = k[1];
        out[i].event = k[2];
        out[i].action = k[3];
        ngx_memcpy(&w, k + 4, sizeof(uint64_t));
        out[i].window = w;
        ngx_memcpy(&out[i].threshold, k + 12, sizeof(uint64_t));
        out[i].scope_len = k[20];
        ngx_memcpy(out[i].scope, k + 21, k[20]);
        out[i].subject_len = vn->len - 21 - k[20];
        ngx_memcpy(out[i].subject, k + 21 + k[20], out[i].subject_len);
        out[i].rule_len = cn->rule_len;
        ngx_memcpy(out[i].rule, cn->rule, cn->rule_len);
        out[i].boot = shm->sh->boot;

        i++;
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);

    return i;
}


/* Redis answered a batch (ok), or it was lost (!ok: send it again) */

void
ngx_http_vetting_counter_done(ngx_http_vetting_shm_t *shm,
    ngx_http_vetting_flush_t *f, ngx_uint_t ok, uint64_t remote,
    int64_t now)
{
    u_char                            key[NGX_HTTP_VETTING_KEY_MAX];
    size_t                            len;
    ngx_str_t                         subject, scope;
    ngx_http_vetting_node_t          *vn;
    ngx_http_vetting_counter_node_t  *cn;

    subject.data = f->subject;
    subject.len = f->subject_len;
    scope.data = f->scope;
    scope.len = f->scope_len;

    len = ngx_http_vetting_counter_key(key, f->by, &subject, &scope,
                                       f->event, f->action, f->threshold,
                                       f->window);

    ngx_shmtx_lock(&shm->shpool->mutex);

    vn = ngx_http_vetting_lookup(shm, key, len, ngx_murmur_hash2(key, len));

    if (vn == NULL) {
        goto done;
    }

    cn = ngx_http_vetting_value(vn);

    if (cn->flush_id != f->id || cn->inflight == 0) {
        goto done;
    }

    if (!ok) {
        cn->inflight_until = 0;
        goto done;
    }

    cn->inflight = 0;
    cn->remote = remote;
    cn->remote_at = now;

    if (cn->pending == 0 && cn->is_dirty) {
        ngx_queue_remove(&cn->dirty);
        cn->is_dirty = 0;
    }

done:

    ngx_shmtx_unlock(&shm->shpool->mutex);
}


/* the outbox */

/*
 * What a full outbox drops first, oldest first within a kind: copies
 * of AuditEvents (the audit log keeps them), then learned credentials,
 * then member authorizations, suspensions last; indexed by OUT_* kind.
 */

static ngx_uint_t  ngx_http_vetting_outbox_rank[] = {
    1,      /* NGX_HTTP_VETTING_OUT_PLAIN */
    3,      /* NGX_HTTP_VETTING_OUT_BLOCK */
    2,      /* NGX_HTTP_VETTING_OUT_MEMBERS */
    0       /* NGX_HTTP_VETTING_OUT_AUDIT */
};


/* per worker: the second a drop was last logged */
static time_t  ngx_http_vetting_outbox_logged;


ngx_int_t
ngx_http_vetting_outbox_put(ngx_http_vetting_shm_t *shm, ngx_uint_t kind,
    u_char *cmd, size_t len, ngx_log_t *log)
{
    size_t                     limit;
    ngx_uint_t                 i, k, dropped, lost;
    ngx_queue_t               *q;
    ngx_http_vetting_entry_t  *e, *old;

    limit = (shm->shpool->end - (u_char *) shm->shpool)
            / NGX_HTTP_VETTING_OUTBOX_SHARE;

    e = NULL;
    dropped = 0;

    ngx_shmtx_lock(&shm->shpool->mutex);

    /*
     * past its share of the zone the outbox drops the oldest entry of
     * the kind worth least, or the new one when all kept are worth more
     */

    while (shm->sh->outbox_size + len > limit
           && !ngx_queue_empty(&shm->sh->outbox))
    {
        old = NULL;

        for (i = 0; i < 4; i++) {
            if (ngx_queue_empty(&shm->sh->outbox_kinds[i])) {
                continue;
            }

            q = ngx_queue_head(&shm->sh->outbox_kinds[i]);
            e = ngx_queue_data(q, ngx_http_vetting_entry_t, kind_queue);

            if (old == NULL
                || ngx_http_vetting_outbox_rank[i]
                   < ngx_http_vetting_outbox_rank[old->kind])
            {
                old = e;
            }
        }

        e = NULL;
        k = old->kind;

        if (ngx_http_vetting_outbox_rank[k]
            > ngx_http_vetting_outbox_rank[kind])
        {
            shm->sh->outbox_lost++;
            dropped++;
            goto done;
        }

        ngx_queue_remove(&old->queue);
        ngx_queue_remove(&old->kind_queue);
        shm->sh->outbox_n--;
        shm->sh->outbox_size -= old->len;
        shm->sh->outbox_lost++;
        dropped++;
        ngx_slab_free_locked(shm->shpool, old);
    }

    e = ngx_http_vetting_alloc(shm,
                               offsetof(ngx_http_vetting_entry_t, data) + len,
                               ngx_http_vetting_now());
    if (e == NULL) {
        shm->sh->outbox_lost++;
        dropped++;
        goto done;
    }

    e->id = ++shm->sh->seq;
    e->until = 0;
    e->attempts = 0;
    e->kind = kind;
    e->len = len;
    ngx_memcpy(e->data, cmd, len);

    ngx_queue_insert_tail(&shm->sh->outbox, &e->queue);
    ngx_queue_insert_tail(&shm->sh->outbox_kinds[kind], &e->kind_queue);
    shm->sh->outbox_n++;
    shm->sh->outbox_size += len;

done:

    lost = shm->sh->outbox_lost;

    ngx_shmtx_unlock(&shm->shpool->mutex);

    /* a flood of events must not flood the log: a line a second */

    if (dropped && ngx_http_vetting_outbox_logged != ngx_time()) {
        ngx_http_vetting_outbox_logged = ngx_time();

        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "vetting outbox full%s, events dropped "
                      "(%ui so far)", shm->shpool->log_ctx, lost);
    }

    return e ? NGX_OK : NGX_ERROR;
}


/*
 * Copies up to n entries not in flight (or whose flight timed out) into
 * buf for sending; each is marked in flight until "until".  An entry
 * stays in the outbox until Redis acknowledges it.
 */

ngx_uint_t
ngx_http_vetting_outbox_take(ngx_http_vetting_shm_t *shm,
    ngx_http_vetting_sent_t *out, ngx_uint_t n, u_char *buf, size_t size,
    int64_t now, int64_t until)
{
    u_char                    *p;
    ngx_uint_t                 i;
    ngx_queue_t               *q;
    ngx_http_vetting_entry_t  *e;

    i = 0;
    p = buf;

    ngx_shmtx_lock(&shm->shpool->mutex);

    for (q = ngx_queue_head(&shm->sh->outbox);
         q != ngx_queue_sentinel(&shm->sh->outbox) && i < n;
         q = ngx_queue_next(q))
    {
        e = ngx_queue_data(q, ngx_http_vetting_entry_t, queue);

        if (e->until > now) {
            continue;
        }

        if ((size_t) (buf + size - p) < e->len) {
            break;
        }

        e->until = until;
        e->attempts++;

        out[i].entry = e;
        out[i].id = e->id;
        out[i].kind = e->kind;
        out[i].attempts = e->attempts;
        out[i].data = p;
        out[i].len = e->len;

        p = ngx_cpymem(p, e->data, e->len);
        i++;
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);

    return i;
}


/* done: Redis took the entry (or refused it for good); else retry */

void
ngx_http_vetting_outbox_done(ngx_http_vetting_shm_t *shm,
    ngx_http_vetting_sent_t *s, ngx_uint_t done)
{
    ngx_http_vetting_entry_t  *e;

    e = s->entry;

    ngx_shmtx_lock(&shm->shpool->mutex);

    /*
     * The entry may be gone, dropped or sent by another worker after its
     * flight timed out; its memory stays mapped, and ids are never
     * reused, so the id tells whether it is still the same entry.
     */

    if (e->id == s->id && e->len == s->len) {

        if (done) {
            ngx_queue_remove(&e->queue);
            ngx_queue_remove(&e->kind_queue);
            shm->sh->outbox_n--;
            shm->sh->outbox_size -= e->len;
            ngx_slab_free_locked(shm->shpool, e);

        } else {
            e->until = 0;
        }
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);
}


uint64_t
ngx_http_vetting_next_id(ngx_http_vetting_shm_t *shm)
{
    uint64_t  id;

    ngx_shmtx_lock(&shm->shpool->mutex);
    id = ++shm->sh->seq;
    ngx_shmtx_unlock(&shm->shpool->mutex);

    return id;
}


/*
 * Whether a member's authorization of an app is new within the rule's
 * window: a marker per member that lives as long as the window.
 */

ngx_uint_t
ngx_http_vetting_member_seen(ngx_http_vetting_shm_t *shm, ngx_str_t *app,
    ngx_str_t *member, ngx_str_t *scope, ngx_http_vetting_rule_t *rule,
    int64_t now, ngx_log_t *log)
{
    u_char                   key[NGX_HTTP_VETTING_KEY_MAX], *p;
    size_t                   len;
    uint32_t                 hash;
    uint64_t                 w;
    ngx_uint_t               fresh;
    ngx_http_vetting_node_t  *vn;

    if (app->len + member->len + scope->len + 16 > sizeof(key)) {
        return 0;
    }

    w = rule->window;

    p = key;
    *p++ = NGX_HTTP_VETTING_NODE_MEMBER;
    p = ngx_cpymem(p, &w, sizeof(uint64_t));
    *p++ = (u_char) scope->len;
    p = ngx_cpymem(p, scope->data, scope->len);
    *p++ = (u_char) app->len;
    p = ngx_cpymem(p, app->data, app->len);
    p = ngx_cpymem(p, member->data, member->len);

    len = p - key;
    hash = ngx_murmur_hash2(key, len);

    ngx_shmtx_lock(&shm->shpool->mutex);

    vn = ngx_http_vetting_lookup(shm, key, len, hash);

    if (vn && vn->expires > now) {
        fresh = 0;

    } else {
        fresh = 1;

        if (vn == NULL) {
            vn = ngx_http_vetting_create(shm, NGX_HTTP_VETTING_NODE_MEMBER,
                                         key, len, hash, 0, now, log);
        }
    }

    if (vn) {
        vn->expires = now + (int64_t) rule->window;
        ngx_queue_remove(&vn->queue);
        ngx_queue_insert_head(&shm->sh->lru, &vn->queue);
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);

    return fresh;
}
