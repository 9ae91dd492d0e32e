#!/usr/bin/perl

# Redis down, slow, restarted (issue 3, point 7): each worker has its
# own two connections; with Redis killed requests go on at once, writes
# and known suspensions are still refused, local rates still apply (a
# rate with fail=closed answers 503), and the outage is logged once;
# once Redis is back (same data) the reconnection is logged once and
# every event made meanwhile is delivered, none lost, none doubled; with
# Redis asleep (DEBUG SLEEP) requests of apps known locally do not wait
# and the others wait no longer than the timeout; a client that goes
# away while its Redis reply is pending breaks nothing.

###############################################################################

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use IO::Socket::INET;
use JSON::PP ();
use POSIX ();
use Test::More;
use Test::Vetting;
use Test::Vetting::Redis qw(encode_command);
use Test::Vetting::Stack qw(wait_until token_key);
use Time::HiRes qw(sleep time);

###############################################################################

my $t = Test::Vetting->new;
my $s = Test::Vetting::Stack->new($t);

# answers by kind of request, the slowest, the refusals (each audited)
my %status;
my ($slowest, $refusals) = (0, 0);
my @sleepers;

$t->write_file('static/Patient/p1', '{"resourceType":"Patient","id":"p1"}');

# an append-only file: a killed Redis comes back with its data (what it
# wrote is in the page cache), so what arrives after the outage can be
# counted
$t->run_redis(args => ['--enable-debug-command', 'yes', '--appendonly',
    'yes', '--appendfsync', 'everysec']);

$t->run_nginx(name => $_, conf => conf($_, '50ms')) for qw(gw1 gw2);
$t->run_nginx(name => 'gw3', conf => conf('gw3', '3s', 1));

ok(wait_until(sub { ($s->status($_)->{redis} // '') eq 'up' }, 5), "$_ up")
    for qw(gw1 gw2 gw3);

# each worker its own two connections, none from a master

my %conns = connections();
my @workers = map { my @p = $t->nginx_pids($_); @p[1 .. $#p] }
    qw(gw1 gw2 gw3);
my @masters = map { ($t->nginx_pids($_))[0] } qw(gw1 gw2 gw3);

is(scalar(@workers), 5, 'five workers');
is(join(' ', sort { $a <=> $b } keys %conns),
    join(' ', sort { $a <=> $b } @workers),
    'redis connections come from the workers');
is(scalar(grep { $conns{$_} ne 'commands events' } keys %conns), 0,
    'each worker: one commands and one events connection')
    or diag explain \%conns;
ok(!grep({ $conns{$_} } @masters), 'none from a master process');

# before the outage: a writing app, a suspended app, members

my $tw = token('gw1', 'writer-app', 'w1');
my $ts = token('gw1', 'susp-app', 's1');
my $tl = token('gw1', 'local-app', 'l1');
token('gw2', 'members-app', 'p0');

$t->redis('FCALL', 'vt_block', 3, 'vt:{app:susp-app}:susp:*', 'vt:index',
    'vt:{app:susp-app}:history', 'vt:events', 'susp-app', '*', 'test',
    'write', 1, 1, 3600000, 'test', 'test', 'set by the test');

ok(defined wait_until(sub {
    !grep { $s->fhir($_, $ts->{access})->{status} != 401 } qw(gw1 gw2)
}, 3), 'suspended app refused on both');

is($s->fhir($_, $tw->{access}, 'DELETE')->{status}, 405,
    "write before the outage on $_") for qw(gw1 gw1 gw2);

settle();

my $counter = 'vt:{app:writer-app}:c:write:3600000:block:1000:*';
is(count($counter), 3, 'fleet count of writes: 3');
is(members(), 1, 'one member');

my $audit0 = $t->redis('XLEN', 'vt:audit');
my %mark = map { $_ => $t->log_size("$_/error.log") } qw(gw1 gw2);

# Redis killed

$t->kill_redis;

for my $gw (qw(gw1 gw2)) {
    for (1 .. 10) {
        timed("$gw read", sub {
            $s->fhir($gw, $tw->{access}, 'GET', '/static/fhir/r4/Patient/p1')
        });
    }

    for (1 .. ($gw eq 'gw1' ? 4 : 3)) {
        timed("$gw write", sub { $s->fhir($gw, $tw->{access}, 'DELETE') });
    }

    for (1 .. 2) {
        timed("$gw suspended", sub { $s->fhir($gw, $ts->{access}) });
    }

    timed("$gw closed", sub {
        $s->fhir($gw, $tw->{access}, 'GET', '/closed/fhir/r4/Patient/p1')
    });
}

is_deeply($status{"$_ read"}, { 200 => 10 }, "$_: reads served") for
    qw(gw1 gw2);
is_deeply($status{'gw1 write'}, { 405 => 4 }, 'gw1: writes refused');
is_deeply($status{'gw2 write'}, { 405 => 3 }, 'gw2: writes refused');
is_deeply($status{"$_ suspended"}, { 401 => 2 },
    "$_: known suspension enforced from the mirror") for qw(gw1 gw2);
is_deeply($status{"$_ closed"}, { 503 => 1 }, "$_: fail=closed rate: 503")
    for qw(gw1 gw2);

my $r = $s->fhir('gw1', $tw->{access}, 'GET', '/closed/fhir/r4/Patient/p1');
$refusals++;
like($r->header('Retry-After') // '', qr/^\d+$/, '503 with Retry-After');

# the local bucket of a fail=open rate: 5r/m burst=5 admits 5 of 10

my @burst = http_burst($t->port('gw1'),
    [($s->fhir_raw($tl->{access}, '/open/fhir/r4/Patient/p1')) x 10]);
my $admitted = grep { ($_->{status} // 0) == 200 } @burst;
$refusals += grep { ($_->{status} // 0) == 429 } @burst;

is($admitted, 5, 'fail=open rate: the local bucket admits its 5');

cmp_ok($slowest, '<', 0.5, 'no request waited: slowest '
    . sprintf('%.3f s', $slowest));

# member authorizations while Redis is away

for (['gw1', 'p1'], ['gw1', 'p2'], ['gw2', 'p3']) {
    my $m = $s->exchange($_->[0], app => 'members-app', member => $_->[1]);
    is($m->{status}, 200, "member $_->[1] authorized on $_->[0]");
}

for my $gw (qw(gw1 gw2)) {
    my $st = $s->status($gw);
    is($st->{redis}, 'down', "$gw: redis down");
    cmp_ok($st->{outbox}, '>', 0, "$gw: events wait in the outbox");
}

# logged once per outage, not per request

sleep 0.5;

my %lines = map { $_ => redis_lines($_) } qw(gw1 gw2);

for my $gw (qw(gw1 gw2)) {
    is(scalar(grep { /is unavailable/ } @{ $lines{$gw} }), 1,
        "$gw: the outage logged once");
}

for (1 .. 20) {
    $s->fhir($_ % 2 ? 'gw1' : 'gw2', $tw->{access});
}

$s->fhir('gw2', $tw->{access}, 'DELETE');
$refusals++;

sleep 0.5;

for my $gw (qw(gw1 gw2)) {
    is(scalar @{ redis_lines($gw) }, scalar @{ $lines{$gw} },
        "$gw: no more redis lines for more requests and retries");
}

# Redis back, with its data

$t->restart_redis;

for my $gw (qw(gw1 gw2)) {
    ok(defined wait_until(sub { ($s->status($gw)->{redis} // '') eq 'up' },
        5), "$gw reconnected");
}

settle();

for my $gw (qw(gw1 gw2)) {
    is(scalar(grep { / is back; shared state resumes/ } log_lines($gw)), 1,
        "$gw: the reconnection logged once");
}

is(count($counter), 3 + 4 + 3 + 1, 'every write of the outage counted once');
is(members(), 4, 'every member authorized meanwhile counted');
is($t->redis('XLEN', 'vt:audit'), $audit0 + $refusals,
    "every refusal of the outage audited once ($refusals)");

sleep 1;

is(count($counter), 11, 'no write counted twice');
is($t->redis('XLEN', 'vt:audit'), $audit0 + $refusals,
    'no audit event twice');

%conns = connections();
is(scalar(keys %conns), 5, 'all five workers connected again');
is(scalar(grep { $conns{$_} ne 'commands events' } keys %conns), 0,
    'still two connections each');

is($s->fhir($_, $ts->{access})->{status}, 401, "$_: suspension still there")
    for qw(gw1 gw2);

###############################################################################

# Redis asleep for 2 s.  On gw3 (timeout 3 s) a request that needs Redis
# waits for it while the requests of an app known locally go on at once;
# on gw1 and gw2 (timeout 50 ms) nothing waits longer than the timeout.

is($s->fhir('gw3', $tw->{access})->{status}, 200, 'gw3 knows the writer app');

%mark = map { $_ => $t->log_size("$_/error.log") } qw(gw1 gw2);

my ($waiting) = asleep(2, sub {
    my $t0 = time;
    my $r = $s->fhir('gw3', $tl->{access}, 'GET',
        '/exact/fhir/r4/Patient/p2');
    return [$r->{status}, time - $t0];
});

my $start = time;
my ($known, $unknown, $requests) = (0, 0, 0);
my %answers;

while (time - $start < 1.5) {
    my $t0 = time;
    my $r = $s->fhir('gw3', $tw->{access}, 'GET',
        '/static/fhir/r4/Patient/p1');
    my $took = time - $t0;
    $known = $took if $took > $known;
    $answers{known}{ $r->{status} // 'none' }++;

    $t0 = time;
    $r = $s->fhir('gw2', 'never-seen-' . int(rand 1e9), 'GET',
        '/static/fhir/r4/Patient/p1');
    $took = time - $t0;
    $unknown = $took if $took > $unknown;
    $answers{unknown}{ $r->{status} // 'none' }++;

    $t0 = time;
    $r = $s->fhir('gw1', $tl->{access}, 'GET',
        '/static-exact/fhir/r4/Patient/p1');
    $took = time - $t0;
    $unknown = $took if $took > $unknown;
    $answers{exact}{ $r->{status} // 'none' }++;

    $requests++;
    sleep 0.01;
}

is(join(',', keys %{ $answers{known} }), '200', 'gw3: known app served');
cmp_ok($known, '<', 0.5,
    sprintf 'gw3: known app never waited for Redis (%.3f s)', $known);
is(join(',', keys %{ $answers{unknown} }), '200',
    'unknown tokens passed to the FHIR server to decide');
is(join(',', keys %{ $answers{exact} }), '200', 'exact rate: fail=open');
cmp_ok($unknown, '<', 0.5,
    sprintf 'gw1, gw2: requests needing Redis waited about the timeout '
    . 'at most (%.3f s)', $unknown);

my ($status, $took) = @{ $waiting->() };
is($status, 200, 'gw3: the request that waited for Redis was admitted');
cmp_ok($took, '>', 1.5, sprintf 'after Redis woke up (%.3f s)', $took);

for my $gw (qw(gw1 gw2)) {
    ok(defined wait_until(sub { ($s->status($gw)->{redis} // '') eq 'up' },
        5), "$gw back once Redis woke up");

    # the reconnect attempts that timed out left their handshakes in
    # Redis, which runs them all when it wakes up: with a 50 ms timeout
    # the first handshake after it may time out too, a second outage

    my $down = grep { /is unavailable/ } @{ redis_lines($gw) };
    my $back = grep { / is back; shared state resumes/ } log_lines($gw);

    diag("$gw: $requests requests in the slow spell, "
        . "$down outage(s) logged, $back return(s)");
    ok($down >= 1 && $down <= 2, "$gw: the slow spell logged as an outage, "
        . 'not per request');
    is($back, $down, "$gw: and each outage as one return");
}

###############################################################################

# a client that goes away while its Redis reply is pending (gw3 waits up
# to 3 s for Redis)

my @gw3 = $t->nginx_pids('gw3');

asleep(1);

my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
    PeerPort => $t->port('gw3'), Proto => 'tcp') or die "connect: $!\n";
print $sock $s->fhir_raw($tl->{access}, '/exact/fhir/r4/Patient/gone');
sleep 0.2;
close $sock;

sleep 1.2;

ok(defined wait_until(sub { ($s->status('gw3')->{redis} // '') eq 'up' }, 5),
    'gw3 up after the reply came');
is_deeply([$t->nginx_pids('gw3')], \@gw3, 'gw3: the same worker, alive');
ok(defined $t->wait_for_log('gw3/vetting.log',
    qr{^/exact/fhir/r4/Patient/gone 499 }, 2), 'gw3 logged the client gone');

is($s->fhir('gw3', $tl->{access}, 'GET', '/exact/fhir/r4/Patient/p1')
    ->{status}, 200, 'gw3 serves the next request');
is(scalar(grep { m{/Patient/gone} } map { $_->{path} }
    $t->upstream_requests('fhir')), 0, 'nothing sent upstream for it');

$t->done_testing;

###############################################################################

sub conf {
    my ($gw, $timeout, $workers) = @_;

    # the static ones answer from a file: no upstream process in the
    # way of the time measured
    my $fhir = sub {
        my ($base, $rate, $static) = @_;
        my $rate_conf = $rate ? "vetting_rate $rate;" : '';
        my $content = $static ? 'alias %%DIR%%/static;'
            : 'proxy_pass http://127.0.0.1:%%PORT:fhir%%;';
        return <<"EOF";
        location $base {
            vetting_endpoint fhir;
            $rate_conf
            $content
        }
EOF
    };

    return $s->gateway_conf($gw, timeout => $timeout,
        connect_timeout => $timeout, backoff => '100ms 300ms',
        workers => $workers // 2,
        server => 'vetting_rule write threshold=1000 window=1h action=block;'
            . 'vetting_rule members threshold=1000 window=1d action=block;',
        locations => $fhir->('/open/fhir/r4', '5r/m burst=5 name=open')
            . $fhir->('/closed/fhir/r4',
                '100r/s burst=100 name=closed fail=closed')
            . $fhir->('/exact/fhir/r4', '100r/s burst=100 name=exact exact')
            . $fhir->('/static/fhir/r4', undef, 1)
            . $fhir->('/static-exact/fhir/r4',
                '100r/s burst=100 name=sexact exact', 1));
}


# a request, timed and counted
sub timed {
    my ($name, $code) = @_;

    my $start = time;
    my $r = $code->();
    my $took = time - $start;

    $slowest = $took if $took > $slowest;
    $status{$name}{ $r->{status} // 'none' }++;
    $refusals++ if ($r->{status} // 0) >= 400;

    return $r;
}


# worker pid => "commands events", from CLIENT LIST
sub connections {
    my %c;

    for (split /\n/, $t->redis('CLIENT', 'LIST')) {
        next if !/ name=vetting-(\d+)-(commands|events) /;
        push @{ $c{$1} }, $2;
    }

    return map { $_ => join ' ', sort @{ $c{$_} } } keys %c;
}


sub token {
    my ($gw, $app, $member) = @_;

    my $r = $s->exchange($gw, app => $app, member => $member);

    wait_until(sub { $t->redis('EXISTS', token_key($r->{access})) }, 5)
        if $r->{access};

    return $r;
}


sub count {
    my ($key) = @_;

    my ($cur, $prev) = @{ $t->redis('HMGET', $key, 'cur', 'prev') };

    return ($cur // 0) + ($prev // 0);
}


sub members {
    return $t->redis('ZCARD', 'vt:{app:members-app}:members:*:86400000');
}


# the lines of the error log since the mark
sub log_lines {
    my ($gw) = @_;

    return split /\n/, substr($t->error_log($gw), $mark{$gw});
}


# the module's error lines about Redis since the mark
sub redis_lines {
    my ($gw) = @_;

    return [grep { /\[(?:error|crit|alert|emerg)\].*redis/ }
        log_lines($gw)];
}


# Redis sleeps for $sec seconds: DEBUG SLEEP from a side connection,
# kept open until the end; with $code, that runs meanwhile in a process
# of its own, and the returned sub waits for what it returned
sub asleep {
    my ($sec, $code) = @_;

    my $c = $t->redis_client;
    syswrite $c->socket, encode_command('DEBUG', 'SLEEP', $sec);
    push @sleepers, $c;
    sleep 0.05;

    return if !$code;

    pipe my $rd, my $wr or die "pipe: $!\n";
    my $pid = fork // die "fork: $!\n";

    if ($pid == 0) {
        close $rd;
        print $wr JSON::PP->new->encode($code->());
        close $wr;
        POSIX::_exit(0);
    }

    close $wr;

    return sub {
        local $/;
        my $text = <$rd>;
        waitpid $pid, 0;
        return JSON::PP->new->decode($text);
    };
}


# both gateways have delivered every event they had
sub settle {
    wait_until(sub {
        !grep { ($s->status($_)->{outbox} // 1) != 0 } qw(gw1 gw2)
    }, 5);

    sleep 0.3;
}

###############################################################################
