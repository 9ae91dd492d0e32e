#!/usr/bin/perl

# The least-privilege Redis users of scripts/redis-users.acl, exactly as
# shipped: a gateway using the vetting-gateway user learns tokens, shares
# rates, counts members and writes, suspends an app and records audit
# events without one command refused, and scripts/vetting-review works
# with the vetting-review user.

###############################################################################

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Test::Vetting;
use Test::Vetting::Stack qw(wait_until);

###############################################################################

my $t = Test::Vetting->new;
my $s = Test::Vetting::Stack->new($t);
my $root = "$FindBin::Bin/..";

my %users;

open my $fh, '<', "$root/scripts/redis-users.acl" or die "acl file: $!\n";

while (<$fh>) {
    next unless /^user\s/;

    my (undef, $name, @words) = split ' ';
    my $pass = "$name-pass";

    $users{$name} = [$name, $pass, grep { !/^>/ } @words];
}

close $fh;

ok($users{'vetting-gateway'} && $users{'vetting-review'},
    'both users in the shipped acl file');

$t->run_redis(users => [values %users]);

$t->run_nginx(name => 'gw1', conf => $s->gateway_conf('gw1',
    redis_args => 'user=vetting-gateway password=vetting-gateway-pass',
    http => <<'EOF',
    vetting_rule write threshold=2 window=1h action=block;
    vetting_rule members threshold=3 window=1d action=block;
EOF
    fhir => 'vetting_rate 10r/s burst=5 per=app;'));

ok(wait_until(sub { ($s->status('gw1')->{redis} // '') eq 'up' }, 5),
    'gateway user: redis up');

# tokens learned, rates shared, members counted

my $tok = $s->exchange('gw1', app => 'app-acl', member => 'm1');
is($tok->{status}, 200, 'token exchanged');

is($s->fhir('gw1', $tok->{access})->{status}, 200, "read $_") for 1 .. 3;

my $c = $t->redis_client;

ok(wait_until(sub { scalar @{ $c->cmd('KEYS', 'vt:tok:*') } >= 2 }, 3),
    'tokens learned into redis');
ok(wait_until(sub { @{ $c->cmd('KEYS', 'vt:{app:app-acl}:rl:*') } }, 3),
    'shared rate bucket in redis');
ok(wait_until(sub {
    $c->cmd('SISMEMBER', 'vt:{app:app-acl}:authorized', 'm1') }, 3),
    'member counted in redis');

# writes: counted, then the app suspended

is($s->fhir('gw1', $tok->{access}, 'DELETE')->{status}, 405, "write $_")
    for 1 .. 2;

ok(wait_until(sub { $c->cmd('HGET', 'vt:index', 'app-acl *') }, 3),
    'suspension recorded in redis');
ok(wait_until(sub { $c->cmd('XLEN', 'vt:audit') >= 2 }, 3),
    'audit events in the stream');

# members: the third distinct member suspends another app

$s->exchange('gw1', app => 'app-many', member => "m$_") for 1 .. 3;

ok(wait_until(sub { $c->cmd('HGET', 'vt:index', 'app-many *') }, 3),
    'members suspension recorded in redis');

my $st = $s->status('gw1');

is($st->{refused_by_redis}, 0, 'nothing refused by redis');
is($st->{outbox}, 0, 'outbox empty');
unlike(join('', $t->error_log('gw1')), qr/redis refused|NOPERM|NOAUTH/,
    'no refusal in the error log');
is_deeply($c->cmd('ACL', 'LOG'), [], 'acl log empty after the gateway');

# the review user

my $review = "VETTING_REDIS_PORT=" . $t->port('redis')
    . " VETTING_REDIS_USER=vetting-review"
    . " VETTING_REDIS_PASSWORD=vetting-review-pass"
    . " $root/scripts/vetting-review";

my $out = `$review list 2>&1`;
is($? >> 8, 0, 'review user: list') or diag($out);
like($out, qr/app-acl/, 'review user: list shows the app');

$out = `$review show app-acl 2>&1`;
is($? >> 8, 0, 'review user: show') or diag($out);

$out = `$review reinstate app-acl --reviewer alice --note test 2>&1`;
is($? >> 8, 0, 'review user: reinstate') or diag($out);

$out = `$review confirm app-many --reviewer alice --revoke --notify --delist 2>&1`;
is($? >> 8, 0, 'review user: confirm') or diag($out);

$out = `$review notifications 5 2>&1`;
is($? >> 8, 0, 'review user: notifications') or diag($out);

$out = `$review audit 5 2>&1`;
is($? >> 8, 0, 'review user: audit') or diag($out);

is_deeply($c->cmd('ACL', 'LOG'), [], 'acl log empty after the review');

ok(wait_until(sub {
    $s->fhir('gw1', $tok->{access})->{status} == 200 }, 2),
    'reinstated app reads again');

$c->close;

$t->done_testing;

###############################################################################
