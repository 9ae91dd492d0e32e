#!/usr/bin/perl

# No token, secret or member data beyond the member id in any log: not
# in the request line nginx appends to the module's error log lines and
# writes for $request in the access log of the README, and not in the
# AuditEvent of a refused authorization request that carries an ID
# token (id_token_hint), a signed request object (request) or the
# member's login (login_hint).

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

$t->write_conf(<<'EOF');
%%BASE%%
worker_processes 1;

http {
    %%HTTP%%

    # the access log of the README's synopsis
    log_format vetting '$remote_addr "$request" $status app=$vetting_app '
                       'member=$vetting_member $vetting_decision '
                       'rule=$vetting_rule country=$vetting_country';
    access_log %%PREFIX%%/vetting.log vetting;

    vetting_audit_log %%PREFIX%%/audit.jsonl;

    server {
        listen 127.0.0.1:%%PORT:nginx%%;
        server_name localhost;

        vetting_rule write threshold=2 window=1h action=block;
        vetting_rule unknown_token threshold=1 window=1h action=log;

        location /authorize {
            vetting_endpoint authorize;
            proxy_pass http://127.0.0.1:%%PORT:as%%;
        }

        location /token {
            vetting_endpoint token;
            proxy_pass http://127.0.0.1:%%PORT:as%%;
        }

        location /fhir/r4 {
            vetting_endpoint fhir;
            proxy_pass http://127.0.0.1:%%PORT:fhir%%;
        }
    }
}
EOF

$t->run_nginx;

my $port = $t->port('nginx');
my $r;

my $id_token = jws({ alg => 'RS256', kid => 'k1' }, { iss => 'https://as',
    sub => 'member-jane', email => 'jane.doe@example.com' });
my $request = jws({ alg => 'RS256' }, { client_id => 'app-l',
    login_hint => 'jane.doe@example.com', scope => 'patient/*.read' });

$r = token_request($port, code => 'c-l', client_id => 'app-l',
    secret => 'app-l-secret');
is($r->status, 200, 'token learned');

# refused writes with secrets in their query; the second suspends

for my $n (1, 2) {
    $r = http_req($port, 'DELETE', '/fhir/r4/Patient/m-1?_format=json'
        . "&refresh_token=QS-RT-$n&client_secret=QS-CS-$n",
        headers => [Authorization => 'Bearer AT-c-l']);
    is($r->status, 405, "write $n refused");
}

# an unknown token in the query: passed, counted, logged by the rule

$r = http_get($port, '/fhir/r4/Patient/m-1?access_token=QS-UNKNOWN-AT');
is($r->status, 200, 'unknown query token passes');

# the suspended app at the authorization endpoint, with an ID token, a
# request object and the member's login in its query

$r = http_get($port, '/authorize?response_type=code&client_id=app-l'
    . "&state=st&id_token_hint=$id_token&request=$request"
    . '&login_hint=jane.doe%40example.com');
is($r->status, 403, 'suspended app refused at the authorization endpoint');

$t->stop_nginx;

my $error = join "\n", $t->error_log;
my $access = $t->read_file('vetting.log') // '';
my $audit = $t->read_file('audit.jsonl') // '';

like($error, qr/vetting refused request/, 'refusals logged');
like($error, qr/reached by client/, 'rule hit logged');

for my $secret ('QS-RT-1', 'QS-CS-1', 'QS-RT-2', 'QS-CS-2', 'QS-UNKNOWN-AT',
    $id_token, $request, 'jane.doe')
{
    my $name = length $secret > 20 ? substr($secret, 0, 16) . '...'
        : $secret;

    unlike($error, qr/\Q$secret\E/, "no \"$name\" in error.log");
    unlike($access, qr/\Q$secret\E/, "no \"$name\" in the access log");
    unlike($audit, qr/\Q$secret\E/, "no \"$name\" in the audit log");
}

# what is not secret stays readable

like($error, qr{request: "DELETE /fhir/r4/Patient/m-1\?_format=json&(?x)
    refresh_token=redacted&client_secret=redacted\ HTTP/1.1"},
    'error.log keeps the request, redacted');
like($access, qr{"GET /authorize\?response_type=code&client_id=app-l&(?x)
    state=st&id_token_hint=redacted&request=redacted&
    login_hint=redacted\ HTTP/1.1"\ 403\ app=app-l},
    'access log keeps the request, redacted');

$t->done_testing;

###############################################################################
