#!/usr/bin/perl

# What the gateways read from Redis is checked before it is mirrored:
# suspensions with scopes or rules that are not what the module writes,
# in the index and on the channel, are skipped and logged, and never
# break the status endpoint's JSON.

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

my $c = $t->redis_client;

# in the index before the gateway starts

$c->cmd('HSET', 'vt:index', 'app-a bad"scope', '1 0 suspended write');
$c->cmd('HSET', 'vt:index', 'app-b *', '1 0 suspended wr"ite');
$c->cmd('HSET', 'vt:index', 'app-c *', '1 0 suspended write');

$t->run_nginx(name => 'gw1', conf => $s->gateway_conf('gw1'));

ok(wait_until(sub { ($s->status('gw1')->{redis} // '') eq 'up' }, 5),
    'redis up');

# and on the channel

$c->cmd('PUBLISH', 'vt:events', 'block app-d sc\\ope 1 0 suspended write');
$c->cmd('PUBLISH', 'vt:events', 'block app-e * 1 0 suspended wr}ite');

ok(wait_until(sub {
    grep { ($_->{app} // '') eq 'app-e' }
        @{ $s->status('gw1')->{suspensions} // [] } }, 3),
    'published suspension mirrored');

my $st = $s->status('gw1');
my %seen = map { $_->{app} => $_ } @{ $st->{suspensions} // [] };

ok(!$st->{error}, 'status is valid JSON');
ok(!exists $seen{'app-a'}, 'index entry with a bad scope skipped');
ok(!exists $seen{'app-d'}, 'message with a bad scope skipped');
ok(exists $seen{'app-c'}, 'a good entry mirrored');
like($seen{'app-b'}{rule} // '', qr/^wr\?ite$/, 'odd rule characters kept out');
like($seen{'app-e'}{rule} // '', qr/^wr\?ite$/, 'odd rule characters kept out');

like(join('', $t->error_log('gw1')), qr/malformed suspension index entry/,
    'bad index entry logged');
like(join('', $t->error_log('gw1')), qr/malformed message on the redis/,
    'bad message logged');

$c->close;

$t->done_testing;

###############################################################################
