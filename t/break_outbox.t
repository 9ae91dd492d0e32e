#!/usr/bin/perl

# The outbox while Redis is away: bounded, and what cannot be rebuilt
# is not dropped for room.  Refusals make one AuditEvent each; a client
# that keeps being refused fills the outbox with them, and they must not
# push out the tokens learned and the members who authorized an app
# meanwhile (the other gateways would never know those tokens, and the
# fleet would never count those members).  Drops are logged, but not
# one line per dropped event.

###############################################################################

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Test::Vetting;
use Test::Vetting::Stack qw(wait_until token_key);

###############################################################################

my $t = Test::Vetting->new;
my $s = Test::Vetting::Stack->new($t);

# an append-only file: a killed Redis comes back with its data
$t->run_redis(args => ['--appendonly', 'yes', '--appendfsync', 'always']);

# the smallest zone: its outbox takes about 64 KiB
for my $gw (qw(gw1 gw2)) {
    $t->run_nginx(name => $gw, conf => $s->gateway_conf($gw, workers => 1,
        zone => '256k', backoff => '50ms 200ms',
        http => 'vetting_rule write threshold=1 window=1h action=block;'));
}

ok(wait_until(sub { ($s->status($_)->{redis} // '') eq 'up' }, 5), "$_ up")
    for qw(gw1 gw2);

my $app = 'flood-app';

# Redis away

$t->kill_redis;

ok(wait_until(sub { ($s->status('gw1')->{redis} // '') ne 'up' }, 5),
    'gw1 sees redis down');

# an app authorized by a member on gw1 meanwhile

my $tok = $s->exchange('gw1', app => $app, member => 'm-out');
is($tok->{status}, 200, 'token learned during the outage');

# a client refused over and over: one AuditEvent each

my $mark = $t->log_size('gw1/error.log');
my $refused = 0;

for (1 .. 300) {
    $refused++ if $s->fhir('gw1', undef, 'DELETE')->{status} == 405;
}

is($refused, 300, 'writes refused while redis is down');

my $st = $s->status('gw1');
ok($st->{outbox_lost} > 0, 'the outbox is bounded: events were dropped');

my @drops = grep { /vetting outbox/ }
    split /\n/, substr($t->read_file('gw1/error.log'), $mark);
ok(@drops >= 1, 'drops logged');
ok(@drops <= 10, 'drops not logged one line each') or diag scalar @drops;

# Redis back: what gw1 learned reaches it

$t->run_redis(args => ['--appendonly', 'yes', '--appendfsync', 'always']);

ok(wait_until(sub { ($s->status($_)->{redis} // '') eq 'up' }, 5),
    "$_ up again") for qw(gw1 gw2);
ok(wait_until(sub { $s->status('gw1')->{outbox} == 0 }, 5),
    'outbox delivered');

is($t->redis('EXISTS', token_key($tok->{access})), 1,
    'token learned during the outage reaches redis');
is($t->redis('SISMEMBER', "vt:{app:$app}:authorized", 'm-out'), 1,
    'member authorization during the outage reaches redis');

# so gw2 knows the token: a write there counts against the app

is($s->fhir('gw2', $tok->{access}, 'DELETE')->{status}, 405,
    'write on gw2 refused');
ok(wait_until(sub { $s->suspension('gw2', $app) }, 3),
    'the app is suspended on gw2');

$t->done_testing;

###############################################################################
