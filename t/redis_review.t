#!/usr/bin/perl

# Review of suspensions with scripts/vetting-review (issue 3, point 6):
# list and show; reinstate (the app's tokens work again on every gateway
# within a second, its counts start afresh); confirm with --revoke
# --notify --delist (every token, refresh token and code issued before
# the block stays dead, even after a later reinstatement; tokens issued
# after work; one notification per member and one for the tenant's
# contacts; the app delisted); a second confirm changes nothing.

###############################################################################

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use JSON::PP ();
use POSIX ();
use Test::More;
use Test::Vetting;
use Test::Vetting::Stack qw(wait_until token_key);
use Time::HiRes qw(sleep time);

###############################################################################

my $t = Test::Vetting->new;
my $s = Test::Vetting::Stack->new($t);

plan(skip_all => 'redis-cli not found') if !$t->has_program('redis-cli');

my $review = "$FindBin::Bin/../scripts/vetting-review";

$t->run_redis;

for my $gw (qw(gw1 gw2)) {
    $t->run_nginx(name => $gw, conf => $s->gateway_conf($gw,
        server => 'vetting_rule write threshold=3 window=1h action=block;'
            . 'vetting_rule members threshold=5 window=1d action=block;'));
}

ok(wait_until(sub { ($s->status($_)->{redis} // '') eq 'up' }, 5), "$_ up")
    for qw(gw1 gw2);

###############################################################################

# a suspension to review

my $app = 'review-app';
my $tok = token('gw1', $app, 'm1');

is($s->fhir('gw2', $tok->{access})->{status}, 200, 'gw2 serves the app');

suspend_by_writes($app, $tok, 'gw1', 'gw1', 'gw1');

my ($rc, $out) = review('list');
is($rc, 0, 'list: exit 0');
like($out, qr/^APP\s+SCOPE\s+STATE\s+SINCE\s+REVOKED-BEFORE\s+RULE$/m,
    'list: header');
like($out, qr/^\Q$app\E\s+\*\s+suspended\s+\d{4}-\d\d-\d\dT\S+Z\s+-\s+write$/m,
    'list: the suspension');

($rc, $out) = review('show', $app);
is($rc, 0, 'show: exit 0');
like($out, qr/^== suspension of "\Q$app\E" in scope "\*"$/m, 'show: title');
like($out, qr/^\s+rule\s+write threshold=3 window=1h action=block$/m,
    'show: rule');
like($out, qr/^\s+count\s+3$/m, 'show: count');
like($out, qr/^\s+evidence\s+\S.*$/m, 'show: evidence');
like($out, qr/^\s+state\s+suspended$/m, 'show: state');
like($out, qr/^\s+\{.*"action":"suspended".*\}$/m, 'show: history');

# reinstate

($rc, $out) = review('reinstate', $app);
isnt($rc, 0, 'reinstate without a reviewer refused');
like($out, qr/--reviewer NAME is required/, 'and says why');

($rc, $out) = review('reinstate', $app, '--reviewer', 'alice', '--note',
    'false positive');
my $start = time;

is($rc, 0, 'reinstate: exit 0');
like($out, qr/^reinstated "\Q$app\E" in scope "\*"$/m, 'reinstate: said so');

for my $gw (qw(gw1 gw2)) {
    ok(defined wait_until(sub {
        $s->fhir($gw, $tok->{access})->{status} == 200
    }, 3, 0.05), "$gw serves the app's token again");
    cmp_ok(time - $start, '<', 1, "$gw within a second");
    ok(!$s->suspension($gw, $app), "$gw mirror cleared");
}

ok(!$t->redis('EXISTS', "vt:{app:$app}:susp:*"), 'record gone');
is($t->redis('HGET', 'vt:index', "$app *"), undef, 'index entry gone');
is(scalar @{ $t->redis('KEYS', "vt:{app:$app}:c:*") }, 0,
    'fleet counters gone');

my @history = history($app);
is(scalar @history, 2, 'two history records');
is($history[1]{action}, 'reinstated', 'history: reinstated');
is($history[1]{reviewer}, 'alice', 'history: reviewer');
is($history[1]{note}, 'false positive', 'history: note');

# counts start afresh: two writes on two gateways do not suspend, the
# third of the new count does

is($s->fhir('gw1', $tok->{access}, 'DELETE')->{status}, 405,
    'write 1 after reinstatement (gw1)');
is($s->fhir('gw2', $tok->{access}, 'DELETE')->{status}, 405,
    'write 2 after reinstatement (gw2)');
settle();

is($s->fhir($_, $tok->{access})->{status}, 200, "$_ still serves after 2")
    for qw(gw1 gw2);
ok(!$t->redis('EXISTS', "vt:{app:$app}:susp:*"), 'not suspended after 2');

is($s->fhir('gw1', $tok->{access}, 'DELETE')->{status}, 405,
    'write 3 after reinstatement');

ok(defined wait_until(sub {
    !grep { $s->fhir($_, $tok->{access})->{status} != 401 } qw(gw1 gw2)
}, 3, 0.05), 'the third write suspends again, on both gateways');

###############################################################################

# members: a reinstated app counts its members afresh too

my $mapp = 'members-app';
my $mtok = token('gw1', $mapp, 'n1');
token($_ % 2 ? 'gw2' : 'gw1', $mapp, "n$_") for 2 .. 5;

ok(defined wait_until(sub { $s->suspension('gw2', $mapp) }, 3),
    'members app suspended at 5 members');

($rc) = review('reinstate', $mapp, '--reviewer', 'alice');
is($rc, 0, 'members app reinstated');
ok(defined wait_until(sub {
    $s->fhir('gw1', $mtok->{access})->{status} == 200
}, 3), 'members app served again');

token('gw2', $mapp, 'n6');
settle();

is($t->redis('ZCARD', "vt:{app:$mapp}:members:*:86400000"), 1,
    'one member in the new window');
ok(!$t->redis('EXISTS', "vt:{app:$mapp}:susp:*"),
    'one new member does not suspend it again');
is($s->fhir($_, $mtok->{access})->{status}, 200,
    "$_ serves the members app") for qw(gw1 gw2);

###############################################################################

# confirm --revoke --notify --delist

my $capp = 'confirm-app';

# a code the app never exchanged, a code it exchanged on gw2, a token
# from a direct exchange

my $a1 = $s->authorize('gw1', app => $capp, member => 'c1');
is($a1->{status}, 302, 'authorize redirects with a code');
ok($a1->{code}, 'code 1');

my $a2 = $s->authorize('gw1', app => $capp, member => 'c1');
ok(wait_until(sub { $t->redis('EXISTS', token_key($a2->{code})) }, 5),
    'codes learned into redis');

my $old = $s->exchange('gw2', app => $capp, code => $a2->{code});
is($old->{status}, 200, 'code 2 exchanged on gw2');

my $old2 = token('gw1', $capp, 'c2');

is($s->fhir($_, $old->{access})->{status}, 200, "$_ serves the old token")
    for qw(gw1 gw2);

suspend_by_writes($capp, $old2, 'gw1', 'gw2', 'gw1');

my $since = $t->redis('HGET', "vt:{app:$capp}:susp:*", 'since');
ok($since, 'suspended');

($rc, $out) = review('confirm', $capp, '--reviewer', 'bob', '--note',
    'abuse confirmed', '--revoke', '--notify', '--delist');

is($rc, 0, 'confirm: exit 0');
like($out, qr/^confirmed the block of "\Q$capp\E" in scope "\*"$/m,
    'confirm: said so');
like($out, qr/^notifications queued: 2 members/m, 'confirm: 2 members');

my %susp = @{ $t->redis('HGETALL', "vt:{app:$capp}:susp:*") };

is($susp{state}, 'confirmed', 'record: confirmed');
is($susp{reviewer}, 'bob', 'record: reviewer');
is($susp{since}, $since, 'record: time kept');
is($t->redis('GET', "vt:{app:$capp}:revoked:*"), $since,
    'credentials before the block revoked');
is($t->redis('HGET', 'vt:index', "$capp *"),
    "$since $since confirmed write", 'index: confirmed, revoked');
is($t->redis('SISMEMBER', 'vt:delisted', $capp), 1, 'delisted');

my @notes = notifications();

is(scalar @notes, 3, 'three notifications');
is(join(' ', sort map { $_->{member} } grep { $_->{to} eq 'member' }
    @notes), 'c1 c2', 'one per member who authorized the app');
my ($contacts) = grep { $_->{to} eq 'tenant-contacts' } @notes;
ok($contacts, 'one for the tenant contacts');
is($contacts->{app}, $capp, 'about the app');
is($contacts->{members}, 2, 'saying how many members');

for my $gw (qw(gw1 gw2)) {
    ok(defined wait_until(sub {
        (($s->suspension($gw, $capp) // {})->{state} // '') eq 'confirmed'
    }, 1), "$gw mirrors the confirmation");
    is($s->suspension($gw, $capp)->{revoked_before}, $since,
        "$gw mirrors the revocation");
}

# a second confirm changes nothing

($rc, $out) = review('confirm', $capp, '--reviewer', 'bob', '--revoke',
    '--notify', '--delist');
is($rc, 0, 'second confirm: exit 0');
like($out, qr/^notifications: queued by an earlier confirmation, not again$/m,
    'second confirm: says nobody is notified again');
is($t->redis('GET', "vt:{app:$capp}:revoked:*"), $since,
    'second confirm: same revocation');
is($t->redis('HGET', 'vt:index', "$capp *"),
    "$since $since confirmed write", 'second confirm: same index entry');
is(scalar(notifications()), 3, 'second confirm: nobody notified twice');
is($s->fhir($_, $old->{access})->{status}, 401, "$_ still refuses")
    for qw(gw1 gw2);

# a later reinstatement: what was issued before the block stays dead

($rc) = review('reinstate', $capp, '--reviewer', 'carol');
is($rc, 0, 'reinstated after the confirmation');
is($t->redis('HGET', 'vt:index', "$capp *"), "0 $since revoked -",
    'index: revoked only');

for my $gw (qw(gw1 gw2)) {
    ok(defined wait_until(sub {
        (($s->suspension($gw, $capp) // {})->{state} // '') eq 'revoked'
    }, 1), "$gw: suspension lifted, revocation kept");
}

my $as = scalar(() = $t->upstream_requests('as'));

for my $gw (qw(gw1 gw2)) {
    for my $o ([$old, 'exchanged code'], [$old2, 'direct exchange']) {
        my $r = $s->fhir($gw, $o->[0]{access});
        is($r->{status}, 401, "$gw: access token of the $o->[1] dead");
        like($r->header('WWW-Authenticate') // '',
            qr/error="invalid_token"/, "$gw: invalid_token");

        $r = $s->refresh($gw, app => $capp, refresh => $o->[0]{refresh});
        is($r->{status}, 400, "$gw: refresh token of the $o->[1] dead");
        is(($r->json // {})->{error}, 'invalid_grant', "$gw: invalid_grant");
    }
}

my $r = $s->exchange('gw2', app => $capp, code => $a1->{code});
is($r->{status}, 400, 'the code never exchanged is dead');
is(($r->json // {})->{error}, 'invalid_grant', 'invalid_grant');

is(scalar(() = $t->upstream_requests('as')), $as,
    'the authorization server saw none of them');

# what is issued after works

my $a3 = $s->authorize('gw2', app => $capp, member => 'c3');
is($a3->{status}, 302, 'authorize works again');

my $new = $s->exchange('gw1', app => $capp, code => $a3->{code});
is($new->{status}, 200, 'a new code is exchanged');
ok(wait_until(sub { $t->redis('EXISTS', token_key($new->{access})) }, 5),
    'new token in redis');

is($s->fhir($_, $new->{access})->{status}, 200, "$_ serves the new token")
    for qw(gw1 gw2);
is($s->refresh('gw2', app => $capp, refresh => $new->{refresh})->{status},
    200, 'the new refresh token works');

$t->done_testing;

###############################################################################

sub review {
    my (@args) = @_;

    my $pid = open(my $fh, '-|') // die "fork: $!\n";

    if ($pid == 0) {
        open STDERR, '>&', \*STDOUT;
        delete $ENV{VETTING_REDIS_PASSWORD};
        exec($review, '-p', $t->port('redis'), @args)
            or print "exec $review: $!\n";
        POSIX::_exit(127);
    }

    local $/;
    my $out = <$fh> // '';
    close $fh;

    return ($? >> 8, $out);
}


sub token {
    my ($gw, $app, $member) = @_;

    my $r = $s->exchange($gw, app => $app, member => $member);

    wait_until(sub { $t->redis('EXISTS', token_key($r->{access})) }, 5)
        if $r->{access};

    return $r;
}


sub suspend_by_writes {
    my ($app, $tok, @gws) = @_;

    $s->fhir($_, $tok->{access}, 'DELETE') for @gws;

    ok(defined wait_until(sub {
        !grep { $s->fhir($_, $tok->{access})->{status} != 401 } qw(gw1 gw2)
    }, 3, 0.05), "$app suspended on both gateways");
}


sub history {
    my ($app) = @_;

    return map { JSON::PP->new->decode($_) }
        @{ $t->redis('LRANGE', "vt:{app:$app}:history", 0, -1) };
}


sub notifications {
    return map { +{ @{ $_->[1] } } }
        @{ $t->redis('XRANGE', 'vt:notify', '-', '+') };
}


# both gateways have delivered every event they had
sub settle {
    wait_until(sub {
        !grep { ($s->status($_)->{outbox} // 1) != 0 } qw(gw1 gw2)
    }, 5);

    sleep 0.3;
}

###############################################################################
