#!/usr/bin/perl

# vetting_rate without Redis: a token bucket per proven app (or per
# client address) in the zone.  Over the rate: 429 with Retry-After,
# RateLimit-Policy, RateLimit and an OperationOutcome "throttled"; other
# apps unaffected; dry_run only notes; buckets survive a reload; a rate
# rule suspends an app that keeps exceeding.

###############################################################################

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib";

use Test::More;
use Test::Vetting;
use Test::Vetting::Fake;

###############################################################################

my $t = Test::Vetting->new;

$t->run_upstream('as', authorization_server());
$t->run_upstream('fhir', fhir_server());

my $conf = <<'EOF' =~ s/%%FORMAT%%/vetting_log_format()/er;
%%BASE%%
worker_processes 2;

http {
    %%HTTP%%
    %%FORMAT%%
    access_log %%PREFIX%%/vetting.log vetting;

    server {
        listen 127.0.0.1:%%PORT:nginx%%;
        server_name localhost;

        location /token {
            vetting_endpoint token;
            proxy_pass http://127.0.0.1:%%PORT:as%%;
        }

        location /fhir/r4/ {
            vetting_endpoint fhir;
            vetting_rate 5r/s burst=5;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }

        location /addr/r4/ {
            vetting_endpoint fhir;
            vetting_rate 3r/m burst=3 per=address;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }

        location /dry/r4/ {
            vetting_endpoint fhir;
            vetting_rate 1r/m burst=1 dry_run;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }

        location /keep/r4/ {
            vetting_endpoint fhir;
            vetting_rate 6r/m burst=2 name=keep;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }

        location /rule/r4/ {
            vetting_endpoint fhir;
            vetting_rate 1r/m burst=1 name=ruled;
            vetting_rule rate threshold=3 window=1m action=block;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }

        %%MORE%%
    }
}
EOF

$t->run_nginx(conf => $conf =~ s/%%MORE%%//r);

my $port = $t->port('nginx');
my ($r, %e);

for my $app (qw(a b c d e)) {
    $r = token_request($port, code => "c-$app", client_id => "app-$app");
    is($r->status, 200, "token of app-$app");
}

sub get {
    my ($id, $uri, $app) = @_;

    return http_get($port, $uri, 'X-Test-Id' => $id,
        $app ? (Authorization => "Bearer AT-c-$app") : ());
}

sub raw {
    my ($uri, $app) = @_;

    return "GET $uri HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
        . ($app ? "Authorization: Bearer AT-c-$app\r\n" : '') . "\r\n";
}

# 20 requests of one app at once: the burst passes, the rest waits

my @burst = http_burst($port, [(raw('/fhir/r4/Patient/m-12345', 'a')) x 20]);
my @ok = grep { ($_->status // 0) == 200 } @burst;
my @over = grep { ($_->status // 0) == 429 } @burst;

is(scalar @ok, 5, 'burst of 5 passes');
is(scalar @over, 15, 'the other 15 are refused');

$r = $over[0] // $burst[0];

like($r->header('Retry-After') // '', qr/^[1-9]\d*$/,
    'retry-after in whole seconds');
is($r->header('Retry-After'), '1', 'retry-after one second');
is($r->header('RateLimit-Policy'), '"app-5r-s-5";q=5;w=1',
    'ratelimit-policy');
is($r->header('RateLimit'), '"app-5r-s-5";r=0;t=1', 'ratelimit');
is($r->header('Content-Type'), 'application/fhir+json', 'content type');
is($r->header('Cache-Control'), 'no-store', 'not stored');

my $issue = outcome_of($r) // {};
is($issue->{severity}, 'error', 'outcome severity');
is($issue->{code}, 'throttled', 'outcome code');
is($issue->{diagnostics},
    'request rate over the limit "app-5r-s-5"; retry after 1 s',
    'outcome diagnostics');

is(scalar(grep { ($_->header('RateLimit') // '') eq '"app-5r-s-5";r=0;t=1' }
    @over), 15, 'every refusal has the same state');
is(scalar(grep { ($_->{headers}{authorization} // '') eq 'Bearer AT-c-a' }
    $t->upstream_requests('fhir')), 5, 'refused never proxied');

like($t->error_log, qr/\Q$_\E/, 'refusal logged')
    for 'vetting refused request: rule "rate", status 429, app "app-a" '
    . '(proven), member "m-12345": request rate over the limit '
    . '"app-5r-s-5"; retry after 1 s';

# another app, and clients with no app, are not limited by it

$r = get('b-1', '/fhir/r4/Patient/m-12345', 'b');
is($r->status, 200, 'another app unaffected');

@burst = http_burst($port, [(raw('/fhir/r4/metadata')) x 10,
    (raw('/fhir/r4/metadata', 'nobody')) x 10]);
is(scalar(grep { ($_->status // 0) == 200 } @burst), 20,
    'a per-app rate leaves unidentified clients alone');

# the bucket refills at the rate

select undef, undef, undef, 0.45;

$r = get('a-later', '/fhir/r4/Patient/m-12345', 'a');
is($r->status, 200, 'refilled after the wait');

# per=address: every client, identified or not

for my $n (1 .. 3) {
    $r = get("addr-$n", '/addr/r4/Patient/m-1', $n == 2 ? 'b' : undef);
    is($r->status, 200, "address $n passes");
}

$r = get('addr-4', '/addr/r4/Patient/m-1');
is($r->status, 429, 'address over the rate');
is($r->header('RateLimit-Policy'), '"address-3r-m-3";q=3;w=60',
    'address policy');
like($r->header('RateLimit') // '', qr/^"address-3r-m-3";r=0;t=(\d+)$/,
    'address ratelimit');
my ($reset) = ($r->header('RateLimit') // '') =~ /t=(\d+)$/;
ok(($reset // 0) >= 19 && $reset <= 20, 'address reset about 20 s');
is($r->header('Retry-After'), $reset, 'address retry-after');

%e = %{ access_entry($t, 'addr-4') };
is($e{rule}, 'rate', 'address rule');
is($e{identity}, 'none', 'address identity');

$r = get('addr-5', '/addr/r4/Patient/m-1', 'c');
is($r->status, 429, 'address rate applies to apps too');

# dry_run: passes, noted in $vetting_dry_run

$r = get('dry-1', '/dry/r4/Patient/m-1', 'c');
is($r->status, 200, 'dry run first passes');
is(access_entry($t, 'dry-1')->{dry}, '', 'dry run first not noted');

$r = get('dry-2', '/dry/r4/Patient/m-1', 'c');
is($r->status, 200, 'dry run over the rate passes');
ok(!defined $r->header('RateLimit'), 'dry run no ratelimit');

%e = %{ access_entry($t, 'dry-2') };
is($e{dry}, '1r/m burst=1 dry_run', 'dry run noted');
is($e{decision}, 'pass', 'dry run decision');
is($e{rule}, '', 'dry run no rule');

# buckets survive a reload

for my $n (1 .. 2) {
    $r = get("keep-$n", '/keep/r4/Patient/m-1', 'd');
    is($r->status, 200, "keep $n passes");
}

$r = get('keep-3', '/keep/r4/Patient/m-1', 'd');
is($r->status, 429, 'keep full');
is($r->header('RateLimit-Policy'), '"keep";q=2;w=20', 'named policy');

my ($master, @old) = $t->nginx_pids;

ok($t->reload(conf => $conf =~ s/%%MORE%%/location \/new { return 204; }/r),
    'reloaded');

my ($master2, @new) = $t->nginx_pids;
my %old = map { $_ => 1 } @old;
ok(@new && !grep({ $old{$_} } @new), 'new workers');
is(http_get($port, '/new')->status, 204, 'new configuration');

$r = get('keep-4', '/keep/r4/Patient/m-1', 'd');
is($r->status, 429, 'still full after the reload');
is(access_entry($t, 'keep-4')->{app}, 'app-d', 'token known after reload');

# a rate rule suspends an app that keeps exceeding

$r = get('rule-1', '/rule/r4/Patient/m-1', 'e');
is($r->status, 200, 'rule 1 passes');

for my $n (2 .. 4) {
    $r = get("rule-$n", '/rule/r4/Patient/m-1', 'e');
    is($r->status, 429, "rule $n over the rate");
}

like($t->error_log, qr/\Q$_\E/, 'third refusal suspends')
    for 'app "app-e" suspended in scope "*": rule '
    . '"rate threshold=3 window=1m action=block" reached (3 events)';

$r = get('rule-5', '/rule/r4/Patient/m-1', 'e');
is($r->status, 401, 'suspended');
is($r->header('WWW-Authenticate'), 'Bearer realm="fhir", '
    . 'error="invalid_token", error_description="the app is suspended '
    . 'pending security review"', 'suspended challenge');
is(access_entry($t, 'rule-5')->{rule}, 'blocked', 'suspended rule');

$r = get('rule-b', '/rule/r4/Patient/m-1', 'b');
is($r->status, 200, 'other app not suspended');

$t->done_testing;

###############################################################################
