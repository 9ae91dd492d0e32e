#!/usr/bin/perl

# Member authorizations counted in Redis (issue 3, points 4 and 6): each
# successful authorization-code exchange counts its member for the app,
# on whichever gateway it happens; the same member twice counts once; a
# failed, replayed or refused exchange counts none; two new members at
# the same instant count two; the 5th distinct member under
# "vetting_rule members threshold=5 window=1d action=block" suspends the
# app on both gateways, with a full suspension record in Redis.

###############################################################################

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP ();
use Test::More;
use Test::Vetting;
use Test::Vetting::Stack qw(wait_until parallel);
use Time::HiRes qw(sleep time);

###############################################################################

my $t = Test::Vetting->new;
my $s = Test::Vetting::Stack->new($t);

my $rule = 'members threshold=5 window=1d action=block';

$t->run_redis;

for my $gw (qw(gw1 gw2)) {
    $t->run_nginx(name => $gw, conf => $s->gateway_conf($gw,
        server => "vetting_rule $rule;"));
}

ok(wait_until(sub { ($s->status($_)->{redis} // '') eq 'up' }, 5), "$_ up")
    for qw(gw1 gw2);

my $app = 'count-app';
my $zset = "vt:{app:$app}:members:*:86400000";
my $set = "vt:{app:$app}:authorized";

# one exchange, one member

my $m1 = $s->exchange('gw1', app => $app, member => 'm1');

is($m1->{status}, 200, 'm1 exchange');
is(members(1), 1, 'm1 counted');
ok($t->redis('ZSCORE', $zset, 'm1'), 'm1 in the window set');
is($t->redis('SISMEMBER', $set, 'm1'), 1, 'm1 in the authorized set');

my $pttl = $t->redis('PTTL', $zset);
cmp_ok($pttl, '>', 86000 * 1000, 'window set expires with the window');
cmp_ok($pttl, '<=', 86400 * 1000, 'and not later');
cmp_ok($t->redis('TTL', $set), '>', 0, 'authorized set has a TTL');

# the same member again, through the other gateway

is($s->exchange('gw2', app => $app, member => 'm1')->{status}, 200,
    'm1 again on gw2');
settle();
is($t->redis('ZCARD', $zset), 1, 'the same member twice counts once');
is($t->redis('SCARD', $set), 1, 'and is one authorized member');

# failed exchanges count nobody

my $code = "code.m9.00aa11bb";

is($s->exchange('gw1', app => $app, code => $code)->{status}, 200,
    'm9 exchange');
is(members(2), 2, 'm9 counted');

is($s->exchange('gw1', app => $app, code => $code)->{status}, 400,
    'replayed code refused by the server');
is($s->exchange('gw2', app => $app, code => 'code.m8.not-hex')->{status},
    400, 'bad code refused by the server');
is($s->exchange('gw2', app => $app, code => "code.m7.ffee")->{status}, 200,
    'and a good one after them');
settle();
is($t->redis('ZCARD', $zset), 3, 'failed exchanges counted nobody');
is(join(' ', sort @{ $t->redis('SMEMBERS', $set) }), 'm1 m7 m9',
    'authorized: the members of successful exchanges only');
ok(!$t->redis('EXISTS', "vt:{app:$app}:susp:*"), 'not suspended at 3');

# two new members at the same instant: on one gateway, then on two

my $app2 = 'instant-app';
my $zset2 = "vt:{app:$app2}:members:*:86400000";
my @raw = map {
    my $body = Test::Vetting::Stack::form_encode(
        grant_type => 'authorization_code', client_id => $app2,
        code => "code.$_.0123456789ab");
    "POST /oauth2/token HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
    . "Content-Type: application/x-www-form-urlencoded\r\n"
    . 'Content-Length: ' . length($body) . "\r\n\r\n$body";
} qw(i1 i2);

my @r = http_burst($t->port('gw1'), \@raw);
is(join(' ', map { $_->{status} // 'none' } @r), '200 200',
    'two exchanges at once on gw1');
is(wait_count($zset2, 2), 2, 'both members counted');

@r = parallel(map {
    my ($gw, $m) = @$_;
    sub { $s->exchange($gw, app => $app2, member => $m)->{status} }
} ['gw1', 'i3'], ['gw2', 'i4']);
is("@r", '200 200', 'two exchanges at once, one on each gateway');
is(wait_count($zset2, 4), 4, 'both counted');
is($t->redis('SCARD', "vt:{app:$app2}:authorized"), 4, 'four authorized');

# the threshold: 4 distinct members, not suspended; the 5th suspends

is($s->exchange('gw2', app => $app, member => 'm4')->{status}, 200,
    'm4 exchange');
is(members(4), 4, '4 distinct members');
settle();

ok(!$t->redis('EXISTS', "vt:{app:$app}:susp:*"), 'not suspended at 4');
is($s->fhir($_, $m1->{access})->{status}, 200, "app served by $_ at 4")
    for qw(gw1 gw2);

my $start = time;

is($s->exchange('gw1', app => $app, member => 'm5')->{status}, 200,
    'm5 exchange: the fifth distinct member');
is(members(5), 5, '5 distinct members');

for my $gw (qw(gw1 gw2)) {
    my $took = wait_until(sub { $s->suspension($gw, $app) }, 5, 0.05);
    ok(defined $took, "suspended on $gw");
    cmp_ok(time - $start, '<', 1, "on $gw within a second of the exchange");
}

is(join(' ', sort @{ $t->redis('ZRANGE', $zset, 0, -1) }), 'm1 m4 m5 m7 m9',
    'window set: the five members');
is(join(' ', sort @{ $t->redis('SMEMBERS', $set) }), 'm1 m4 m5 m7 m9',
    'authorized set: the five members');

my %susp = @{ $t->redis('HGETALL', "vt:{app:$app}:susp:*") };
my $now = redis_ms();

is($susp{app}, $app, 'record: app');
is($susp{scope}, '*', 'record: scope');
is($susp{state}, 'suspended', 'record: state');
is($susp{rule}, $rule, 'record: rule as written');
is($susp{event}, 'members', 'record: event');
is($susp{count}, 5, 'record: count');
is($susp{threshold}, 5, 'record: threshold');
is($susp{window}, 86400000, 'record: window');
is($susp{gateway}, 'gw1', 'record: gateway');
like($susp{policy} // '', qr/\Q$rule\E/, 'record: policy in force');
like($susp{evidence} // '', qr/^5 distinct members authorized the app/,
    'record: evidence');
cmp_ok($susp{since}, '<=', $now, 'record: since');
cmp_ok($susp{since}, '>', $now - 10000, 'record: since is recent');

is($t->redis('HGET', 'vt:index', "$app *"),
    "$susp{since} 0 suspended members", 'index entry');

my @history = map { JSON::PP->new->decode($_) }
    @{ $t->redis('LRANGE', "vt:{app:$app}:history", 0, -1) };
is(scalar @history, 1, 'one history record');
is($history[0]{action}, 'suspended', 'history: suspended');
is($history[0]{count}, 5, 'history: count');

for my $gw (qw(gw1 gw2)) {
    is($s->suspension($gw, $app)->{since}, $susp{since},
        "$gw mirrors the time of the suspension");
    is($s->fhir($gw, $m1->{access})->{status}, 401,
        "$gw refuses the app's token");
}

# a refused exchange counts nobody

my $before = grep { $_->{path} =~ /token/ } $t->upstream_requests('as');
my $r = $s->exchange('gw2', app => $app, member => 'm6');

is($r->{status}, 401, 'exchange of the suspended app refused');
is(($r->json // {})->{error}, 'invalid_client', 'invalid_client');
is(scalar(grep { $_->{path} =~ /token/ } $t->upstream_requests('as')),
    $before, 'the server never saw it');
settle();
is($t->redis('ZCARD', $zset), 5, 'refused exchange counted nobody');
is($t->redis('SCARD', $set), 5, 'nor authorized anybody');
ok(!$t->redis('SISMEMBER', $set, 'm6'), 'm6 not authorized');

$t->done_testing;

###############################################################################

# waits for the window set of the app to hold n members
sub members {
    my ($n) = @_;

    return wait_count($zset, $n);
}


sub wait_count {
    my ($key, $n) = @_;

    wait_until(sub { $t->redis('ZCARD', $key) >= $n }, 5);

    return $t->redis('ZCARD', $key);
}


# both gateways have delivered every event they had
sub settle {
    wait_until(sub {
        !grep { ($s->status($_)->{outbox} // 1) != 0 } qw(gw1 gw2)
    }, 5);

    sleep 0.25;
}


sub redis_ms {
    my $time = $t->redis('TIME');

    return $time->[0] * 1000 + int($time->[1] / 1000);
}

###############################################################################
