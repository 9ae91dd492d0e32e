#!/usr/bin/perl

# End to end with real parts: the demo stack (a real OAuth 2.0 / SMART
# authorization server, oidc-provider; a FHIR server; redis-server; the
# stock nginx with the module) replays its five apps through the whole
# SMART flow, and the replay checks every decision that must hold: the
# good app is never refused, writes never reach the FHIR server, the
# writing app, the app calling from abroad and the app gathering members
# are suspended, the bursting app gets 429s.

###############################################################################

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Test::Vetting;

###############################################################################

my $t = Test::Vetting->new;
my $root = "$FindBin::Bin/..";

plan(skip_all => 'node and npm are needed for the demo stack')
    unless $t->has_program('node') && $t->has_program('npm');

my $db = $ENV{VETTING_COUNTRY_DB} // "$root/build/demo-country.mmdb";

# the country database is fetched by "make run" and "make test"

ok(-s $db, 'country database present') or diag("missing $db");

my $port = $t->port('demo');
my $log = $t->dir . '/demo.log';

my $rc = system("cd $root && ONCE=1 PORT=$port GEOIP_DB=$db "
    . "VETTING_MODULE=" . $t->module_path
    . " timeout 300 scripts/demo/run.sh > $log 2>&1");

my $out = $t->read_file('demo.log') // '';

is($rc >> 8, 0, 'replay: every behaviour that must hold held')
    or diag($out);

for my $app (qw/writer-app abroad-app popular-app/) {
    like($out, qr/^\Q$app\E\s.*\ssuspended\s*$/m, "$app suspended");
}

like($out, qr/^good-app\s.*\sactive\s*$/m, 'good-app still active');
like($out, qr/^burst-app\s.*429=\d+/m, 'burst-app got 429s');
unlike($out, qr/^\s+FAIL\b/m, 'no failed expectation');

# nothing of the stack is left running

my @left = grep { /\Q$port\E/ } `ps -eo args`;
is(scalar @left, 0, 'every process of the demo stopped')
    or diag(join '', @left);

$t->done_testing;

###############################################################################
