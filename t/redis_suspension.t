#!/usr/bin/perl

# Suspensions on every gateway (issue 3, point 6): a suspension made on
# gw1 is applied by gw2 within a second; while suspended the app is
# refused at the authorization endpoint (403, no redirect), at the token
# endpoint (401 invalid_client, code and refresh grants alike) and on
# the FHIR API (401 invalid_token); a tenant-scoped rule suspends in its
# tenant only; a gateway started later refuses the app from its first
# request; the suspension keeps its time through a restart of both
# gateways; one AuditEvent records the block.

###############################################################################

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP ();
use Test::More;
use Test::Vetting;
use Test::Vetting::Redis qw(encode_command);
use Test::Vetting::Stack qw(wait_until token_key);
use Time::HiRes qw(sleep time);

###############################################################################

my $t = Test::Vetting->new;
my $s = Test::Vetting::Stack->new($t);

$t->run_redis(args => ['--enable-debug-command', 'yes']);
$t->run_nginx(name => $_, conf => conf($_)) for qw(gw1 gw2);

ok(wait_until(sub { ($s->status($_)->{redis} // '') eq 'up' }, 5), "$_ up")
    for qw(gw1 gw2);

my $app = 'susp-app';

# tokens: one by a form client_id, one by HTTP Basic; gw2 has used the
# first, never the second

my $tok1 = $s->exchange('gw1', app => $app, member => 'm1');
my $tok2 = $s->exchange('gw1', app => $app, member => 'm2', basic => 1);

is($tok1->{status}, 200, 'token by client_id');
is($tok2->{status}, 200, 'token by Basic');
ok(wait_until(sub {
    $t->redis('EXISTS', token_key($tok1->{access}))
        && $t->redis('EXISTS', token_key($tok2->{access}))
}, 5), 'tokens known in redis');

is($s->fhir('gw2', $tok1->{access})->{status}, 200, 'gw2 serves the app');

# three writes on gw1: the third suspends

is($s->fhir('gw1', $tok1->{access}, 'DELETE')->{status}, 405, 'write 1');
is($s->fhir('gw1', $tok1->{access}, 'PUT')->{status}, 405, 'write 2');
is($s->fhir('gw2', $tok1->{access})->{status}, 200, 'gw2 serves after 2');

my $r = $s->fhir('gw1', $tok1->{access}, 'POST', '/fhir/r4/Patient');
my $start = time;

is($r->{status}, 405, 'write 3 refused as a write');

my $took = wait_until(sub {
    $s->fhir('gw2', $tok1->{access})->{status} == 401
}, 3, 0.05);

ok(defined $took, 'gw2 applies the suspension');
cmp_ok(time - $start, '<', 1, 'within a second');
diag(sprintf 'suspension on gw1 applied by gw2 after %.3f s',
    time - $start);

my %susp = @{ $t->redis('HGETALL', "vt:{app:$app}:susp:*") };
my $since = $susp{since};

is($susp{event}, 'write', 'suspended by the write rule');
ok(wait_until(sub { ($s->suspension($_, $app) // {})->{since} == $since },
    1), "$_ mirrors the time redis recorded") for qw(gw1 gw2);

# while suspended: every endpoint of both gateways

my $as = as_requests();
my $fhir = fhir_requests();

for my $gw (qw(gw1 gw2)) {
    $r = $s->authorize($gw, app => $app, member => 'm3');
    is($r->{status}, 403, "$gw authorize: 403");
    is($r->header('Location'), undef, "$gw authorize: no redirect");
    like($r->header('Content-Type') // '', qr{^application/json},
        "$gw authorize: JSON");
    is(($r->json // {})->{error}, 'unauthorized_client',
        "$gw authorize: unauthorized_client");

    $r = $s->exchange($gw, app => $app, member => 'm3');
    token_refused($r, "$gw code grant");
    is($r->header('WWW-Authenticate'), undef,
        "$gw code grant: no challenge without Basic");

    $r = $s->exchange($gw, app => $app, member => 'm3', basic => 1);
    token_refused($r, "$gw code grant, Basic");
    like($r->header('WWW-Authenticate') // '', qr/^Basic realm=/,
        "$gw code grant, Basic: Basic challenge");

    $r = $s->refresh($gw, app => $app, refresh => $tok1->{refresh});
    token_refused($r, "$gw refresh grant");

    $r = $s->refresh($gw, app => $app, refresh => $tok2->{refresh},
        basic => 1);
    token_refused($r, "$gw refresh grant, Basic");
    like($r->header('WWW-Authenticate') // '', qr/^Basic realm=/,
        "$gw refresh grant, Basic: Basic challenge");

    for my $tok ($tok1, $tok2) {
        $r = $s->fhir($gw, $tok->{access});
        is($r->{status}, 401, "$gw FHIR: 401");
        like($r->header('WWW-Authenticate') // '',
            qr/^Bearer .*error="invalid_token"/, "$gw FHIR: invalid_token");
        is(($r->json // {})->{issue}[0]{code}, 'security',
            "$gw FHIR: OperationOutcome security");
    }
}

is(as_requests(), $as, 'the authorization server saw none of them');
is(fhir_requests(), $fhir, 'the FHIR server saw none of them');

# another app is served meanwhile

my $other = $s->exchange('gw2', app => 'other-app', member => 'm1');
is($other->{status}, 200, 'another app gets tokens');
is($s->fhir('gw1', $other->{access})->{status}, 200, 'and is served');

# a tenant-scoped rule: suspended in tenant acme only

my $tapp = 'tenant-app';
my $ttok = $s->exchange('gw1-acme', app => $tapp, member => 'm1');

is($ttok->{status}, 200, 'tenant app token through acme');
ok(wait_until(sub { $t->redis('EXISTS', token_key($ttok->{access})) }, 5),
    'tenant app token known in redis');

is($s->fhir($_, $ttok->{access})->{status}, 200, "$_ serves the tenant app")
    for qw(gw1-acme gw2-acme gw1-other gw2-other gw2);

is($s->fhir('gw1-acme', $ttok->{access}, 'DELETE')->{status}, 405,
    "acme write $_") for 1 .. 3;

ok(defined wait_until(sub {
    $s->fhir('gw2-acme', $ttok->{access})->{status} == 401
}, 3, 0.05), 'gw2 applies the tenant suspension');

%susp = @{ $t->redis('HGETALL', "vt:{app:$tapp}:susp:acme") };
is($susp{scope}, 'acme', 'record scope: the tenant');
ok(!$t->redis('EXISTS', "vt:{app:$tapp}:susp:*"), 'no global suspension');
like($t->redis('HGET', 'vt:index', "$tapp acme") // '',
    qr/^\d+ 0 suspended write$/, 'index entry for the tenant');

for my $gw (qw(gw1 gw2)) {
    is($s->fhir("$gw-acme", $ttok->{access})->{status}, 401,
        "$gw acme: FHIR refused");
    is($s->authorize("$gw-acme", app => $tapp)->{status}, 403,
        "$gw acme: authorize refused");
    is($s->fhir("$gw-other", $ttok->{access})->{status}, 200,
        "$gw other tenant: FHIR served");
    is($s->authorize("$gw-other", app => $tapp)->{status}, 302,
        "$gw other tenant: authorize redirects");
    is($s->exchange("$gw-other", app => $tapp, member => 'm2')->{status},
        200, "$gw other tenant: token issued");
    is($s->fhir($gw, $ttok->{access})->{status}, 200,
        "$gw without tenant: served");
}

# Redis records a suspension late (asleep for 0.3 s): its time, not the
# one gw1 noted when it suspended, is the time of the suspension

my $late = 'late-app';
my $ltok = $s->exchange('gw1', app => $late, member => 'm1');

is($s->fhir('gw1', $ltok->{access}, 'DELETE')->{status}, 405,
    "late app write $_") for 1 .. 2;

my $sleeper = $t->redis_client;
syswrite $sleeper->socket, encode_command('DEBUG', 'SLEEP', '0.3');
sleep 0.02;

my $noted = int(time * 1000);
is($s->fhir('gw1', $ltok->{access}, 'DELETE')->{status}, 405,
    'late app write 3, redis asleep');

ok(wait_until(sub { $t->redis('EXISTS', "vt:{app:$late}:susp:*") }, 3),
    'late app suspended in redis');

my $recorded = $t->redis('HGET', "vt:{app:$late}:susp:*", 'since');
cmp_ok($recorded - $noted, '>=', 200, 'recorded after redis woke up');

ok(defined wait_until(sub {
    !grep { (($s->suspension($_, $late) // {})->{since} // 0) != $recorded }
        qw(gw1 gw2)
}, 3), 'both gateways mirror the time redis recorded');

# a gateway started after the suspension refuses from its first request

$t->run_nginx(name => 'gw3', conf => conf('gw3'));

$r = $s->fhir('gw3', $tok2->{access});
is($r->{status}, 401, 'gw3 refuses the app at its first request');
is($s->authorize('gw3', app => $app)->{status}, 403,
    'gw3 authorize refused');
is($s->fhir('gw3-acme', $ttok->{access})->{status}, 401,
    'gw3 acme refuses the tenant app');
is($s->fhir('gw3-other', $ttok->{access})->{status}, 200,
    'gw3 other tenant serves it');
is($s->suspension('gw3', $app)->{since}, $since,
    'gw3 mirrors the original time');

$t->stop_nginx('gw3');

# one AuditEvent for the block, in the stream and in gw1's log

sleep 0.5;

is(scalar(block_events(stream_events(), $app)), 1,
    'one block AuditEvent in the stream');
is(scalar(block_events([$t->audit_events('gw1/audit.jsonl')], $app)), 1,
    'one in the audit log of gw1');
is(scalar(block_events([$t->audit_events('gw2/audit.jsonl')], $app)), 0,
    'none in that of gw2');

my ($block) = block_events(stream_events(), $app);
is($block->{outcome}, '0', 'block event: outcome 0');
is($block->{source}{site}, 'gw1', 'block event: from gw1');

# a restart of both gateways: the same suspension, the same time

$t->stop_nginx($_) for qw(gw1 gw2);
$t->run_nginx(name => $_, conf => conf($_)) for qw(gw1 gw2);

for my $gw (qw(gw1 gw2)) {
    is($s->fhir($gw, $tok1->{access})->{status}, 401,
        "$gw refuses after the restart");
    is($s->suspension($gw, $app)->{since}, $since,
        "$gw: original time kept");
    is(($s->suspension($gw, $tapp, "acme") // {})->{scope}, "acme",
        "$gw: tenant scope kept");
}

is($t->redis('HGET', "vt:{app:$app}:susp:*", 'since'), $since,
    'redis record keeps its time');
is($t->redis('LLEN', "vt:{app:$app}:history"), 1, 'one history record');

sleep 0.3;

is(scalar(block_events(stream_events(), $app)), 1,
    'still one block AuditEvent after the restart');

$t->done_testing;

###############################################################################

sub conf {
    my ($gw) = @_;

    my $tenant_rule = 'vetting_rule write threshold=3 window=1h '
        . 'action=block scope=tenant;';

    return $s->gateway_conf($gw,
        server => 'vetting_rule write threshold=3 window=1h action=block;',
        servers => $s->server_block("$gw-acme", tenant => 'acme',
                server => $tenant_rule)
            . $s->server_block("$gw-other", tenant => 'other',
                server => $tenant_rule));
}


sub token_refused {
    my ($r, $name) = @_;

    is($r->{status}, 401, "$name: 401");
    is(($r->json // {})->{error}, 'invalid_client', "$name: invalid_client");
    is($r->header('Cache-Control'), 'no-store', "$name: no-store");
    is($r->header('Pragma'), 'no-cache', "$name: no-cache");
}


sub as_requests { scalar(() = $t->upstream_requests('as')) }
sub fhir_requests { scalar(() = $t->upstream_requests('fhir')) }


sub stream_events {
    return [map { JSON::PP->new->decode({ @{ $_->[1] } }->{event}) }
        @{ $t->redis('XRANGE', 'vt:audit', '-', '+') }];
}


# AuditEvents of kind "suspended" about the app
sub block_events {
    my ($events, $app) = @_;

    return grep {
        my $e = $_;
        (grep { ($_->{code} // '') eq 'suspended' } @{ $e->{subtype} // [] })
        && grep { ((($_->{who} // {})->{identifier} // {})->{value} // '')
                  eq $app } @{ $e->{agent} // [] }
    } @$events;
}

###############################################################################
