#!/usr/bin/perl

# While Redis is away, counts wait in the zone for it; counts of client
# addresses must not fill the zone for good: a client with many
# addresses would then leave no room to learn tokens or to mirror a
# suspension (an alert, and the app not suspended), and would push the
# tokens learned before the outage out of the zone, so that their apps
# are no longer known.

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

$t->run_redis;

$t->run_nginx(name => 'gw1', conf => $s->gateway_conf('gw1', workers => 1,
    zone => '256k', backoff => '50ms 200ms', http => <<'EOF'));
    vetting_rule write threshold=2 window=1h action=block;
    vetting_rule unknown_token threshold=50 window=1m action=reject;
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;
EOF

ok(wait_until(sub { ($s->status('gw1')->{redis} // '') eq 'up' }, 5),
    'redis up');

my $tok = $s->exchange('gw1', app => 'app-z', member => 'm1');
is($tok->{status}, 200, 'token learned');

$t->kill_redis;

ok(wait_until(sub { ($s->status('gw1')->{redis} // '') ne 'up' }, 5),
    'redis down');

# 6000 addresses, each refused a write with a guessed token

for my $batch (0 .. 59) {
    my $raw = '';

    for my $i (1 .. 100) {
        my $n = $batch * 100 + $i;
        my $addr = sprintf '10.%d.%d.%d', $n >> 16, ($n >> 8) & 255,
            $n & 255;

        $raw .= "DELETE /fhir/r4/Patient/p1 HTTP/1.1\r\nHost: localhost\r\n"
            . "X-Forwarded-For: $addr\r\nAuthorization: Bearer guess-$n\r\n"
            . ($i == 100 ? "Connection: close\r\n" : '') . "\r\n";
    }

    http($t->port('gw1'), $raw, timeout => 30);
}

# the app learned before is still known: two writes suspend it

is($s->fhir('gw1', $tok->{access}, 'DELETE')->{status}, 405, "write $_")
    for 1 .. 2;
is($s->fhir('gw1', $tok->{access})->{status}, 401,
    'app suspended after the flood');

# a token learned now is known

my $new = $s->exchange('gw1', app => 'app-n', member => 'm2');
is($new->{status}, 200, 'token during the flood');

is($s->fhir('gw1', $new->{access}, 'DELETE')->{status}, 405, "new write $_")
    for 1 .. 2;
is($s->fhir('gw1', $new->{access})->{status}, 401,
    'app of a token learned after the flood suspended');

$t->done_testing;

###############################################################################
