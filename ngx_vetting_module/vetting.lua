#!lua name=vetting_1
--
-- Copyright (C) ngx_vetting_module authors
--
-- Redis functions of ngx_vetting_module.  Every decision Redis takes for
-- the gateways is one of these functions, so it is atomic, and it reads
-- Redis's clock, so that every gateway shares one notion of time.  The
-- gateways load this library on every connection (FUNCTION LOAD
-- REPLACE); scripts/vetting-review calls the review functions.
--
-- Key layout under the prefix P (vetting_redis_prefix, default "vt:").
-- Per-app keys carry the hash tag {app:<client id>}, per-address keys
-- {addr:<address>}, so that one subject's keys share a Redis Cluster
-- slot:
--
--   P{app:X}:susp:<scope>     hash   a suspension (scope "*" or a tenant)
--   P{app:X}:revoked:<scope>  string ms; credentials issued before are dead
--   P{app:X}:history          list   JSON records of blocks and reviews
--   P{app:X}:members:<scope>:<window ms>
--                             zset   member -> ms of the last authorization
--   P{app:X}:authorized       set    every member who authorized the app
--   P{app:X}:rl:<policy>      hash   token bucket of a shared rate
--   P{S}:c:<event>:<window>   hash   sliding-window rule counter
--   P{S}:seen:<id>            string an event already applied (dedupe)
--   Ptok:<sha256 hex>         string a learned token, code or refresh
--                                    token: "<kind> <issued> <app>
--                                    <tenant> <member>", TTL its lifetime
--   Pindex                    hash   "<app> <scope>" -> "<since>
--                                    <revoked> <state> <rule>"
--   Paudit                    stream AuditEvent JSON, field "event"
--   Pnotify                   stream notifications to send
--   Pdelisted                 set    apps the member-facing gallery hides
--   Pevents                   pub/sub channel to every gateway
--
-- Messages on Pevents:
--   block <app> <scope> <since> <revoked> <state> <rule>
--   unblock <app> <scope> <revoked>
--   reset <app>


local function now_ms()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end


local function num(v, default)
    local n = tonumber(v)
    if n == nil then
        return default
    end
    return n
end


-- a sliding window approximated from two fixed windows aligned to Redis
-- time; returns the estimated count after adding delta

local function window_add(key, window, delta, now)
    local h = redis.call('HMGET', key, 'start', 'cur', 'prev')
    local start = num(h[1], 0)
    local cur = num(h[2], 0)
    local prev = num(h[3], 0)
    local aligned = now - now % window

    if aligned >= start + 2 * window then
        prev = 0
        cur = 0
    elseif aligned >= start + window then
        prev = cur
        cur = 0
    end

    if aligned > start then
        start = aligned
    end

    cur = cur + delta

    redis.call('HSET', key, 'start', start, 'cur', cur, 'prev', prev)
    redis.call('PEXPIRE', key, 2 * window)

    local elapsed = now - start
    return cur + math.floor(prev * (window - elapsed) / window)
end


local function index_value(since, revoked, state, rule)
    return table.concat({since, revoked, state, rule}, ' ')
end


-- creates a suspension unless one exists; returns 1 and its time when it
-- created it, 0 and the existing time otherwise

local function suspend(susp, index, history, channel, f)
    local since = redis.call('HGET', susp, 'since')
    if since then
        return 0, tonumber(since)
    end

    local now = now_ms()
    local revoked = num(redis.call('GET', f.revoked_key), 0)

    redis.call('HSET', susp,
               'app', f.app, 'scope', f.scope, 'state', 'suspended',
               'since', now, 'rule', f.rule, 'event', f.event,
               'count', f.count, 'threshold', f.threshold,
               'window', f.window, 'gateway', f.gateway,
               'policy', f.policy, 'evidence', f.evidence)

    redis.call('HSET', index, f.app .. ' ' .. f.scope,
               index_value(now, revoked, 'suspended', f.event))

    redis.call('RPUSH', history, cjson.encode({
        action = 'suspended', app = f.app, scope = f.scope, time = now,
        rule = f.rule, event = f.event, count = f.count,
        threshold = f.threshold, window = f.window, gateway = f.gateway,
        policy = f.policy, evidence = f.evidence
    }))

    redis.call('PUBLISH', channel, table.concat({'block', f.app, f.scope,
               now, revoked, 'suspended', f.event}, ' '))

    return 1, now
end


local function block_fields(args, first)
    return {
        app = args[first], scope = args[first + 1],
        rule = args[first + 2], event = args[first + 3],
        count = args[first + 4], threshold = args[first + 5],
        window = args[first + 6], gateway = args[first + 7],
        policy = args[first + 8], evidence = args[first + 9]
    }
end


-- FCALL vt_lease 1 <bucket> <rate> <burst> <want>
--
-- Takes up to want requests from a token bucket (rate in millionths of a
-- request per second, capacity burst).  Returns {granted, remaining,
-- retry ms}.  Requests refused take nothing, so a client over its limit
-- recovers as soon as it slows down.

local function vt_lease(keys, args)
    local rate = num(args[1], 0)
    local burst = num(args[2], 0)
    local want = num(args[3], 1)
    local now = now_ms()

    if rate <= 0 or burst <= 0 or want < 1 then
        return redis.error_reply('ERR vt_lease: bad arguments')
    end

    local h = redis.call('HMGET', keys[1], 'excess', 'last')
    local excess = num(h[1], 0)
    local last = num(h[2], now)
    local elapsed = now - last

    if elapsed < 0 then
        elapsed = 0
    end

    excess = excess - rate * elapsed / 1000
    if excess < 0 then
        excess = 0
    end

    local cap = burst * 1000000
    local avail = math.floor((cap - excess) / 1000000)
    local granted = math.min(want, avail)

    if granted < 0 then
        granted = 0
    end

    excess = excess + granted * 1000000

    redis.call('HSET', keys[1], 'excess', string.format('%.0f', excess),
               'last', now)
    redis.call('PEXPIRE', keys[1],
               math.ceil(cap * 1000 / rate) + 1000)

    local remaining = avail - granted
    local retry = 0

    if remaining < 1 then
        retry = math.ceil((excess - cap + 1000000) * 1000 / rate)
    end

    return {granted, remaining, retry}
end


-- FCALL vt_count 5 <counter> <seen> <susp> <index> <history>
--           <id> <delta> <window> <threshold> <action> <channel>
--           <app> <scope> <rule> <event> <count> <threshold> <window>
--           <gateway> <policy> <evidence>
--
-- Adds a batch of events to a rule counter, once per id.  At a block
-- threshold it suspends the app.  Returns {count, suspended now, since}.

local function vt_count(keys, args)
    local window = num(args[3], 0)
    local threshold = num(args[4], 0)
    local now = now_ms()

    if window <= 0 then
        return redis.error_reply('ERR vt_count: bad window')
    end

    local delta = num(args[2], 0)

    if not redis.call('SET', keys[2], '1', 'NX', 'PX', 600000) then
        delta = 0
    end

    local count = window_add(keys[1], window, delta, now)

    if args[5] ~= 'block' or threshold <= 0 or count < threshold
       or args[7] == ''
    then
        return {count, 0, 0}
    end

    local f = block_fields(args, 7)
    f.count = count
    f.revoked_key = string.gsub(keys[3], ':susp:', ':revoked:', 1)

    local created, since = suspend(keys[3], keys[4], keys[5], args[6], f)
    return {count, created, since}
end


-- FCALL vt_members 5 <zset> <authorized> <susp> <index> <history>
--           <member> <time> <window> <threshold> <action> <channel>
--           <app> <scope> <rule> <event> <count> <threshold> <window>
--           <gateway> <policy> <evidence>
--
-- One member authorized the app (a successful code exchange).  The same
-- member twice counts once; delivering the same event twice changes
-- nothing.  Returns {distinct members in the window, suspended now,
-- since}.

local function vt_members(keys, args)
    local member = args[1]
    local window = num(args[3], 0)
    local threshold = num(args[4], 0)
    local now = now_ms()
    local at = num(args[2], now)

    if member == nil or member == '' or window <= 0 then
        return redis.error_reply('ERR vt_members: bad arguments')
    end

    if at > now then
        at = now
    end

    if at > now - window then
        redis.call('ZADD', keys[1], 'GT', at, member)
    end

    redis.call('ZREMRANGEBYSCORE', keys[1], '-inf', now - window)
    redis.call('PEXPIRE', keys[1], window)

    redis.call('SADD', keys[2], member)
    redis.call('EXPIRE', keys[2], 400 * 86400)

    local count = redis.call('ZCARD', keys[1])

    if args[5] ~= 'block' or threshold <= 0 or count < threshold then
        return {count, 0, 0}
    end

    local f = block_fields(args, 7)
    f.count = count
    f.revoked_key = string.gsub(keys[3], ':susp:', ':revoked:', 1)

    local created, since = suspend(keys[3], keys[4], keys[5], args[6], f)
    return {count, created, since}
end


-- FCALL vt_block 3 <susp> <index> <history> <channel>
--           <app> <scope> <rule> <event> <count> <threshold> <window>
--           <gateway> <policy> <evidence>
--
-- A gateway suspended an app from its own counts; records it unless a
-- suspension exists already.  Returns {suspended now, since}.

local function vt_block(keys, args)
    local f = block_fields(args, 2)
    f.revoked_key = string.gsub(keys[1], ':susp:', ':revoked:', 1)

    local created, since = suspend(keys[1], keys[2], keys[3], args[1], f)
    return {created, since}
end


-- FCALL vt_audit 2 <seen> <stream> <id> <json> <maxlen>
--
-- Appends an AuditEvent to the review stream once per event id.

local function vt_audit(keys, args)
    if not redis.call('SET', keys[1], '1', 'NX', 'PX', 3600000) then
        return 0
    end

    redis.call('XADD', keys[2], 'MAXLEN', '~', num(args[3], 1000000), '*',
               'event', args[2], 'id', args[1])
    return 1
end


-- the keys of one app, from the prefix and the client id

local function app_keys(prefix, app, scope)
    local tag = prefix .. '{app:' .. app .. '}:'
    return {
        tag = tag,
        susp = tag .. 'susp:' .. scope,
        revoked = tag .. 'revoked:' .. scope,
        history = tag .. 'history',
        members = tag .. 'members:*',
        authorized = tag .. 'authorized',
        index = prefix .. 'index',
        notify = prefix .. 'notify',
        delisted = prefix .. 'delisted',
        channel = prefix .. 'events'
    }
end


local function delete_matching(pattern)
    local cursor = '0'
    repeat
        local r = redis.call('SCAN', cursor, 'MATCH', pattern,
                             'COUNT', 1000)
        cursor = r[1]
        for _, k in ipairs(r[2]) do
            redis.call('DEL', k)
        end
    until cursor == '0'
end


-- FCALL vt_reinstate 0 <prefix> <app> <scope> <reviewer> <note>
--
-- A person reinstated the app after review: the suspension ends, the
-- app's existing credentials work again (unless a confirmed block
-- revoked them earlier), and its counts start afresh on every gateway.

local function vt_reinstate(keys, args)
    local prefix, app, scope = args[1], args[2], args[3]
    local k = app_keys(prefix, app, scope)
    local now = now_ms()

    if redis.call('EXISTS', k.susp) == 0 then
        return redis.error_reply('ERR no suspension of "' .. app ..
                                 '" in scope "' .. scope .. '"')
    end

    local since = redis.call('HGET', k.susp, 'since')
    local revoked = num(redis.call('GET', k.revoked), 0)

    redis.call('DEL', k.susp)

    if revoked > 0 then
        redis.call('HSET', k.index, app .. ' ' .. scope,
                   index_value(0, revoked, 'revoked', '-'))
    else
        redis.call('HDEL', k.index, app .. ' ' .. scope)
    end

    delete_matching(k.tag .. 'c:*')
    delete_matching(k.tag .. 'rl:*')
    delete_matching(k.members)
    redis.call('SREM', k.delisted, app)

    redis.call('RPUSH', k.history, cjson.encode({
        action = 'reinstated', app = app, scope = scope, time = now,
        suspended_since = since, reviewer = args[4], note = args[5]
    }))

    redis.call('PUBLISH', k.channel,
               table.concat({'unblock', app, scope, revoked}, ' '))
    redis.call('PUBLISH', k.channel, 'reset ' .. app)

    return 1
end


-- FCALL vt_confirm 0 <prefix> <app> <scope> <reviewer> <note>
--           <revoke 0|1> <notify 0|1> <delist 0|1>
--
-- A person confirmed the block after review: the app stays refused in
-- that scope for good.  revoke: every access token, refresh token and
-- code issued to it before the block stays dead, even if the app is
-- registered again later.  notify: one notification for every member
-- who authorized the app, and one for the tenant's contacts.  delist:
-- the member-facing gallery drops the app.  Returns {revoked before,
-- members notified, 1 when notifications were queued now (0 when an
-- earlier confirmation queued them)}.

local function vt_confirm(keys, args)
    local prefix, app, scope = args[1], args[2], args[3]
    local k = app_keys(prefix, app, scope)
    local now = now_ms()

    local since = tonumber(redis.call('HGET', k.susp, 'since'))
    if since == nil then
        return redis.error_reply('ERR no suspension of "' .. app ..
                                 '" in scope "' .. scope .. '"')
    end

    local rule = redis.call('HGET', k.susp, 'event') or '-'
    local revoked = num(redis.call('GET', k.revoked), 0)

    if args[6] == '1' and since > revoked then
        revoked = since
        redis.call('SET', k.revoked, revoked)
    end

    redis.call('HSET', k.susp, 'state', 'confirmed', 'reviewer', args[4],
               'reviewed', now, 'note', args[5])
    redis.call('HSET', k.index, app .. ' ' .. scope,
               index_value(since, revoked, 'confirmed', rule))

    local notified = 0
    local queued = 0

    -- members are told once, however often the block is confirmed

    if args[7] == '1' and not redis.call('HGET', k.susp, 'notified') then
        redis.call('HSET', k.susp, 'notified', now)
        queued = 1

        for _, m in ipairs(redis.call('SMEMBERS', k.authorized)) do
            redis.call('XADD', k.notify, '*', 'to', 'member', 'member', m,
                       'app', app, 'scope', scope, 'reason', rule,
                       'since', since)
            notified = notified + 1
        end

        redis.call('XADD', k.notify, '*', 'to', 'tenant-contacts',
                   'tenant', scope, 'app', app, 'scope', scope,
                   'reason', rule, 'since', since, 'members', notified)
    end

    if args[8] == '1' then
        redis.call('SADD', k.delisted, app)
    end

    redis.call('RPUSH', k.history, cjson.encode({
        action = 'confirmed', app = app, scope = scope, time = now,
        suspended_since = since, reviewer = args[4], note = args[5],
        revoked_before = revoked, members_notified = notified,
        delisted = args[8] == '1'
    }))

    redis.call('PUBLISH', k.channel, table.concat({'block', app, scope,
               since, revoked, 'confirmed', rule}, ' '))

    return {revoked, notified, queued}
end


redis.register_function('vt_lease', vt_lease)
redis.register_function('vt_count', vt_count)
redis.register_function('vt_members', vt_members)
redis.register_function('vt_block', vt_block)
redis.register_function('vt_audit', vt_audit)
redis.register_function('vt_reinstate', vt_reinstate)
redis.register_function('vt_confirm', vt_confirm)
