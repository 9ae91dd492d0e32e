#!/usr/bin/perl

# Rates shared through Redis (issue 3, point 3): on one gateway, 50
# requests of one app at the same instant against a limit of 10 admit
# exactly 10, every round; across two gateways an app limited to N
# that asks for 2N gets N +- 5%; a client over its limit recovers once
# it slows down, since refused requests take nothing from the bucket;
# the bucket's key carries the app's hash tag and a TTL.

###############################################################################

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Test::Vetting;
use Test::Vetting::Stack qw(wait_until parallel token_key);
use Time::HiRes qw(sleep time);

###############################################################################

my $t = Test::Vetting->new;
my $s = Test::Vetting::Stack->new($t);

$t->run_redis;

for my $gw (qw(gw1 gw2)) {
    $t->run_nginx(name => $gw, conf => $s->gateway_conf($gw,
        fhir => 'vetting_rate 10r/m burst=10 name=ten;',
        locations => <<'EOF'));
        location /big/fhir/r4 {
            vetting_endpoint fhir;
            vetting_rate 1r/m burst=200 name=big;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }

        location /fast/fhir/r4 {
            vetting_endpoint fhir;
            vetting_rate 10r/s burst=5 name=fast;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }
EOF
}

ok(wait_until(sub { ($s->status($_)->{redis} // '') eq 'up' }, 5), "$_ up")
    for qw(gw1 gw2);

# 50 requests at the same instant against 10r/m burst=10, five rounds

my @admitted;

for my $round (1 .. 5) {
    my $app = "burst-app-$round";
    my $tok = $s->exchange('gw1', app => $app, member => "m$round");

    my @r = http_burst($t->port('gw1'),
        [($s->fhir_raw($tok->{access})) x 50]);

    my $ok = grep { ($_->{status} // 0) == 200 } @r;
    my $limited = grep { ($_->{status} // 0) == 429 } @r;

    push @admitted, $ok;
    is($ok, 10, "round $round: exactly 10 of 50 admitted");
    is($limited, 40, "round $round: the other 40 refused with 429");

    my $upstream = grep {
        ($_->{headers}{authorization} // '') eq "Bearer $tok->{access}"
    } $t->upstream_requests('fhir');

    is($upstream, 10, "round $round: 10 reached the FHIR server");
}

diag('one gateway, 50 requests at once against a limit of 10: admitted '
    . join(', ', @admitted) . ' in 5 rounds');

my ($refused) = grep { ($_->{status} // 0) == 429 }
    http_burst($t->port('gw1'), [($s->fhir_raw(
        $s->exchange('gw1', app => 'burst-app-h', member => 'mh')->{access}))
        x 12]);

ok($refused, 'a refusal in a burst of 12');
like($refused->header('Retry-After') // '', qr/^[1-9]\d*$/, 'Retry-After');
like($refused->header('RateLimit-Policy') // '', qr/^"ten";q=10;w=60$/,
    'RateLimit-Policy');
like($refused->header('RateLimit') // '', qr/^"ten";r=0;t=\d+$/,
    'RateLimit');
is(($refused->json // {})->{issue}[0]{code}, 'throttled',
    'OperationOutcome throttled');

# accuracy across two gateways: limit N = 200, 4 clients on each gateway
# ask for 50 each, 2N in all, at the same time

my $n = 200;
my $tok = $s->exchange('gw1', app => 'acc-app', member => 'm-acc');

ok(wait_until(sub { $t->redis('EXISTS', token_key($tok->{access})) }, 5),
    'token known in redis, for gw2');

my $start = time;

my @counts = parallel(map {
    my $gw = $_;
    map {
        sub {
            my %c;
            for (1 .. 50) {
                my $r = $s->fhir($gw, $tok->{access}, 'GET',
                    '/big/fhir/r4/Patient/p1');
                $c{ $r->{status} // 'none' }++;
            }
            return \%c;
        }
    } 1 .. 4
} qw(gw1 gw2));

my $took = time - $start;
my %gw = (gw1 => [@counts[0 .. 3]], gw2 => [@counts[4 .. 7]]);
my %admitted;

for my $name (sort keys %gw) {
    $admitted{$name} += $_->{200} // 0 for @{ $gw{$name} };
}

my $total = $admitted{gw1} + $admitted{gw2};
my $other = 0;

for my $c (@counts) {
    $other += $c->{$_} for grep { $_ ne '200' && $_ ne '429' } keys %$c;
}

diag(sprintf 'accuracy: limit N=%d, asked %d (200 per gateway), admitted '
    . '%d (gw1 %d, gw2 %d), %+.1f%% of N, in %.2f s', $n, 2 * $n, $total,
    $admitted{gw1}, $admitted{gw2}, 100 * ($total - $n) / $n, $took);

cmp_ok($total, '>=', $n * 0.95, 'at least N - 5% admitted across both');
cmp_ok($total, '<=', $n * 1.05, 'at most N + 5% admitted across both');
is($other, 0, 'every other answer was 429');
ok($admitted{gw1} && $admitted{gw2}, 'both gateways admitted some');

# refused requests take nothing: the client recovers when it slows down

my $app = 'recover-app';
$tok = $s->exchange('gw1', app => $app, member => 'm-rec');

my @r = http_burst($t->port('gw1'),
    [($s->fhir_raw($tok->{access}, '/fast/fhir/r4/Patient/p1')) x 20]);
my $ok = grep { ($_->{status} // 0) == 200 } @r;

cmp_ok($ok, '>=', 5, 'fast: the burst of 5 admitted');
cmp_ok($ok, '<=', 6, 'fast: little more than the burst admitted');

sleep 0.6;

@r = http_burst($t->port('gw1'),
    [($s->fhir_raw($tok->{access}, '/fast/fhir/r4/Patient/p1')) x 5]);
is(scalar(grep { ($_->{status} // 0) == 200 } @r), 5,
    'fast: the bucket refilled, 5 admitted again');

# 2 s of 50 requests a second against 10r/s: about 10 a second pass

my %c;
$start = time;

while (time - $start < 2) {
    my $r = $s->fhir('gw1', $tok->{access}, 'GET',
        '/fast/fhir/r4/Patient/p1');
    $c{ $r->{status} // 'none' }++;
    sleep 0.02;
}

my $elapsed = time - $start;
my $pass = $c{200} // 0;

diag(sprintf 'over the limit for %.2f s: %d admitted, %d refused', $elapsed,
    $pass, $c{429} // 0);

cmp_ok($c{429} // 0, '>', 0, 'sustained excess refused');
cmp_ok($pass, '>=', int(10 * $elapsed * 0.7),
    'refusals do not keep the window full: about 10 r/s admitted');
cmp_ok($pass, '<=', 5 + int(10 * $elapsed) + 1, 'but not more than the rate');

sleep 0.25;

is($s->fhir('gw1', $tok->{access}, 'GET', '/fast/fhir/r4/Patient/p1')
    ->{status}, 200, 'admitted once it slowed down');

# the keys: per-app hash tag, a TTL

my $key = 'vt:{app:burst-app-1}:rl:ten';
my $pttl = $t->redis('PTTL', $key);

is($t->redis('TYPE', $key), 'hash', 'bucket key with the app hash tag');
cmp_ok($pttl, '>', 0, 'bucket key has a TTL');
cmp_ok($pttl, '<=', 61001, 'bucket TTL: the time to refill, and a second');

my @rl = grep { /:rl:/ } @{ $t->redis('KEYS', 'vt:*') };
is(scalar(grep { !/^vt:\{app:[^}]+\}:rl:(?:ten|big|fast)$/ } @rl), 0,
    'every bucket key is per app, hash-tagged')
    or diag explain \@rl;

$pttl = $t->redis('PTTL', token_key($tok->{access}));
cmp_ok($pttl, '>', 3500 * 1000, 'learned token key has a TTL');
cmp_ok($pttl, '<=', 3600 * 1000, 'of the token lifetime');

$t->done_testing;

###############################################################################
