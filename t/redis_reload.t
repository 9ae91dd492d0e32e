#!/usr/bin/perl

# Reloads and Redis credentials (issue 3, points 1 and 6): a reload
# keeps suspensions and counts; a reload that resizes the zone (a new,
# empty zone) still refuses suspended apps from its first request, having
# read them all from Redis, even when Redis answers slowly; an ACL user,
# its password and a database number work; a wrong password is logged
# clearly and never written to the log.

###############################################################################

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Test::Vetting;
use Test::Vetting::Redis qw(encode_command);
use Test::Vetting::Stack qw(wait_until token_key);
use Time::HiRes qw(sleep time);

###############################################################################

my $t = Test::Vetting->new;
my $s = Test::Vetting::Stack->new($t);

my $rule = 'vetting_rule write threshold=3 window=1h action=block;';
my @sleepers;

$t->run_redis(args => ['--enable-debug-command', 'yes']);

$t->run_nginx(name => $_, conf => conf($_, '16m')) for qw(gw1 gw2);

ok(wait_until(sub { ($s->status($_)->{redis} // '') eq 'up' }, 5), "$_ up")
    for qw(gw1 gw2);

# app A has 2 writes, app B is suspended, and so are 150 others

my $ta = token('gw1', 'app-a', 'm1');
my $tb = token('gw1', 'app-b', 'm1');

is($s->fhir('gw1', $ta->{access}, 'DELETE')->{status}, 405, "A write $_")
    for 1 .. 2;
is($s->fhir('gw1', $tb->{access}, 'DELETE')->{status}, 405, "B write $_")
    for 1 .. 3;

my $c = $t->redis_client;
$c->pipeline(map {
    ['FCALL', 'vt_block', 3, "vt:{app:many-$_}:susp:*", 'vt:index',
        "vt:{app:many-$_}:history", 'vt:events', "many-$_", '*', 'test',
        'write', 1, 1, 3600000, 'test', 'test', 'set by the test']
} 1 .. 150);
$c->close;

ok(defined wait_until(sub { suspensions('gw2') == 151 }, 3),
    '151 suspensions mirrored');

settle();

my $counter = 'vt:{app:app-a}:c:write:3600000:block:3:*';
is(count($counter), 2, 'A: 2 writes counted in redis');

my $since = $s->suspension('gw1', 'app-b')->{since};

# a reload that keeps the zone

my @old = $t->nginx_pids('gw1');
ok($t->reload(name => 'gw1'), 'reload');
isnt(($t->nginx_pids('gw1'))[1], $old[1], 'new workers');

is($s->fhir('gw1', $tb->{access})->{status}, 401,
    'B refused at the first request after the reload');
is($s->suspension('gw1', 'app-b')->{since}, $since, 'B: same time');
is(suspensions('gw1'), 151, 'every suspension kept');

is($s->fhir('gw1', $ta->{access}, 'DELETE')->{status}, 405, 'A write 3');
ok(defined wait_until(sub {
    !grep { $s->fhir($_, $ta->{access})->{status} != 401 } qw(gw1 gw2)
}, 3), 'the count was kept: the third write suspends A on both');

# a reload into a new, empty zone

my $tc = token('gw2', 'app-c', 'm1');

is($s->fhir('gw1', $tc->{access}, 'DELETE')->{status}, 405, "C write $_")
    for 1 .. 2;
settle();

my $start = time;

ok($t->reload(name => 'gw1', conf => conf('gw1', '32m')),
    'reload with the zone resized');

is($s->fhir('gw1', $tb->{access})->{status}, 401,
    'new zone: B refused at the first request');
is($s->authorize('gw1', app => 'many-77')->{status}, 403,
    'new zone: the others too');
is(suspensions('gw1'), 152, 'new zone: every suspension read from redis');
is($s->suspension('gw1', 'app-b')->{since}, $since,
    'new zone: B keeps its time');
cmp_ok($s->status('gw1')->{synced}, '>=', int($start * 1000) - 1000,
    'new zone: read after the reload');

is($s->fhir('gw1', $tc->{access}, 'DELETE')->{status}, 405, 'C write 3');
ok(defined wait_until(sub {
    !grep { $s->fhir($_, $tc->{access})->{status} != 401 } qw(gw1 gw2)
}, 3), 'the count kept in redis: the third write suspends C on both');

# once more into a new zone, with Redis asleep for 0.3 s while the new
# workers connect (the timeout is 1 s): the first request waits for
# the suspensions and then for the token

asleep(0.3);

ok($t->reload(name => 'gw1', conf => conf('gw1', '24m')),
    'reload with the zone resized, redis asleep');

$start = time;
my $r = $s->fhir('gw1', $tb->{access});

is($r->{status}, 401, 'slow redis: B refused at the first request');
cmp_ok(time - $start, '<', 1.5, 'in less than the timeout and the sleep');
is(suspensions('gw1'), 153, 'slow redis: every suspension read');

# the workers of a new zone all read the index at once: thirty reloads
# into a new zone, by four workers, each mirror every suspension

$t->redis('HSET', 'vt:index', map {
    ("bulk-$_ *", (1796000000000 + $_) . ' 0 suspended write')
} 1 .. 500);

my $total = $t->redis('HLEN', 'vt:index');
my @short;

$t->run_nginx(name => 'gw4', conf => conf('gw4', '16m', 4));

for my $round (1 .. 30) {
    $t->reload(name => 'gw4', conf => conf('gw4', (16 + $round % 2) . 'm', 4));
    wait_until(sub { ($s->status('gw4')->{synced} // 0) > 0 }, 5);
    sleep 0.1;

    my $n = suspensions('gw4');
    push @short, "round $round: $n" if $n != $total;
}

is(join(', ', @short), '', "thirty new zones: each mirrors all $total");

###############################################################################

# an ACL user with a password, and a database

$t->run_redis(name => 'acl', requirepass => 'admin-pw',
    users => [['vetting', 'vet-Secret-41']]);

$t->run_nginx(name => 'gw-acl', conf => $s->gateway_conf('gw-acl',
    redis => 'acl', redis_args => 'db=3 user=vetting password=vet-Secret-41',
    workers => 1, server => $rule));

ok(defined wait_until(sub { ($s->status('gw-acl')->{redis} // '') eq 'up' },
    5), 'acl: up');

my @clients = grep { / name=vetting-\d+-/ }
    split /\n/, $t->redis_client(name => 'acl')->cmd('CLIENT', 'LIST');

is(scalar @clients, 2, 'acl: two connections');
is(scalar(grep { / user=vetting / } @clients), 2, 'acl: as user "vetting"');
ok(scalar(grep { /-commands / && / db=3 / } @clients),
    'acl: commands in db 3');

my $tacl = $s->exchange('gw-acl', app => 'app-acl', member => 'm1');
is($tacl->{status}, 200, 'acl: token');

my $db3 = $t->redis_client(name => 'acl');
$db3->cmd('SELECT', 3);

ok(wait_until(sub { $db3->cmd('EXISTS', token_key($tacl->{access})) }, 5),
    'acl: the token learned into db 3');
is($t->redis_client(name => 'acl')->cmd('EXISTS',
    token_key($tacl->{access})), 0, 'acl: not into db 0');

$s->fhir('gw-acl', $tacl->{access}, 'DELETE') for 1 .. 3;

ok(wait_until(sub { $db3->cmd('HGET', 'vt:index', 'app-acl *') }, 5),
    'acl: suspension in db 3');
is($s->fhir('gw-acl', $tacl->{access})->{status}, 401, 'acl: enforced');

# a wrong password

$t->run_nginx(name => 'gw-bad', conf => $s->gateway_conf('gw-bad',
    redis => 'acl', redis_args => 'user=vetting password=Wr0ng-Pass-77',
    workers => 1));

ok(defined $t->wait_for_log('gw-bad/error.log', qr/redis \S+ refused AUTH/,
    5),
    'wrong password: logged');
like($t->error_log('gw-bad'), qr/redis \S+ refused AUTH: "WRONGPASS/,
    'wrong password: says what Redis said');

unlike($t->error_log('gw-bad'), qr/refused the vetting functions/,
    'wrong password: not blamed on the functions');
is($s->fhir('gw-bad', 'unknown-token')->{status}, 200,
    'wrong password: requests still served');
isnt($s->status('gw-bad')->{redis}, 'up', 'wrong password: redis not up');

sleep 1;

# one line per connection of the worker, not one per reconnect attempt

cmp_ok(scalar(grep { /refused AUTH/ } $t->error_log('gw-bad')), '<=', 2,
    'wrong password: logged once per connection');

my $logs = join '', map { $t->read_file("gw-bad/$_") // '' }
    qw(error.log stderr.log access.log vetting.log audit.jsonl);

unlike($logs, qr/Wr0ng-Pass-77/, 'the password is never logged');
unlike($t->error_log('gw-acl'), qr/vet-Secret-41/,
    'nor the right one');

# the password made right in Redis: both connections recover, and a
# suspension published then is applied within a second

$t->redis_client(name => 'acl')->cmd('ACL', 'SETUSER', 'vetting',
    '>Wr0ng-Pass-77');

ok(defined wait_until(sub { ($s->status('gw-bad')->{redis} // '') eq 'up' },
    5), 'password right: up');
sleep 0.5;

$t->redis_client(name => 'acl')->cmd('FCALL', 'vt_block', 3,
    'vt:{app:late-app}:susp:*', 'vt:index', 'vt:{app:late-app}:history',
    'vt:events', 'late-app', '*', 'test', 'write', 1, 1, 3600000, 'test',
    'test', 'set by the test');

ok(defined wait_until(sub { $s->suspension('gw-bad', 'late-app') }, 1),
    'password right: a suspension published is applied within a second');

$t->done_testing;

###############################################################################

sub conf {
    my ($gw, $zone, $workers) = @_;

    return $s->gateway_conf($gw, zone => $zone, timeout => '1s',
        server => $rule, workers => $workers // 2);
}


sub token {
    my ($gw, $app, $member) = @_;

    my $r = $s->exchange($gw, app => $app, member => $member);

    wait_until(sub { $t->redis('EXISTS', token_key($r->{access})) }, 5)
        if $r->{access};

    return $r;
}


sub suspensions {
    my ($gw) = @_;

    return scalar grep { $_->{state} eq 'suspended' }
        @{ $s->status($gw)->{suspensions} // [] };
}


sub count {
    my ($key) = @_;

    my ($cur, $prev) = @{ $t->redis('HMGET', $key, 'cur', 'prev') };

    return ($cur // 0) + ($prev // 0);
}


sub asleep {
    my ($sec) = @_;

    my $c = $t->redis_client;
    syswrite $c->socket, encode_command('DEBUG', 'SLEEP', $sec);
    push @sleepers, $c;
    sleep 0.02;
}


sub settle {
    wait_until(sub {
        !grep { ($s->status($_)->{outbox} // 1) != 0 } qw(gw1 gw2)
    }, 5);

    sleep 0.3;
}

###############################################################################
